"""The attack API: options, the call's contract, AttackResult, the registry and the model
runner, on tiny models whose outputs are known in closed form."""
import math

import pytest
import torch
from torch import nn

from pyadv.attacks import FIPSO, AttackResult, available, create, f0_loss, quantize
from pyadv.attacks._runner import ModelRunner
from pyadv.fi.jacobian import activation_bytes_per_image
from pyadv.attacks.fipso import success_of


class Linear(nn.Module):
    """logits = W x + c on flattened images: softmax in closed form."""

    def __init__(self, P=16, K=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(K, P, generator=g, dtype=torch.float64) * 2)
        self.c = nn.Parameter(torch.randn(K, generator=g, dtype=torch.float64) * 0.1)

    def forward(self, x):
        return x.flatten(1).to(self.W.dtype) @ self.W.T + self.c


class Flaky(nn.Module):
    """A conv net with BatchNorm and dropout, to check modes are restored."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


def images(B=6, C=1, H=4, W=4, seed=1, dtype=torch.float64):
    return torch.rand(B, C, H, W, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture
def lin():
    model = Linear()
    x = images()
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


# --- f0 as printed in Shi et al. (2020) ---------------------------------------------------------

P3 = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)


@pytest.mark.parametrize("y, target, p_err, expected", [
    (0, None, None, 0.2),      # y1 = y_true: |P1 - P2|
    (1, None, None, 0.0),      # misclassified
    (0, None, 0.75, 0.45),     # y1 = y_true: |P2 - P_err|
    (1, None, 0.75, 0.25),     # y1 != y_true: |P1 - P_err|
    (1, 2, None, 0.3),         # y1 != target: |P1 - P_target|
    (1, 0, None, 0.0),         # y1 = target
    (1, 2, 0.75, 0.3),         # y1 != target: |P1 - P_target|
    (1, 0, 0.75, 0.25),        # y1 = target: |P1 - P_err|
])
def test_f0_matches_hand_computed_values(y, target, p_err, expected):
    t = None if target is None else torch.tensor(target)
    got = f0_loss(P3, torch.tensor(y), t, p_err)
    assert float(got) == pytest.approx(expected, abs=1e-12)


def test_success_needs_p_err_within_tolerance():
    p = torch.tensor([[0.1, 0.76, 0.14], [0.1, 0.86, 0.04]])
    y = torch.tensor([0, 0])
    assert success_of(p, y, None, 0.75, 0.05).tolist() == [True, False]
    assert success_of(p, y, None, None, 0.05).tolist() == [True, True]
    assert success_of(p, y, torch.tensor([1, 2]), None, 0.05).tolist() == [True, False]


@pytest.mark.parametrize("target, p_err", [(None, None), (None, 0.6), ("next", None), ("next", 0.6)])
def test_fitness_on_linear_model_equals_closed_form(lin, target, p_err):
    """The reported gbest f_A is a f0 + b ||omega|| computed by hand from the closed-form
    softmax of the returned image."""
    model, x, y = lin
    t = None if target is None else (y + 1) % 4
    a, b = 2.0, 0.01
    r = FIPSO(model, pixels="gradient", m=5, p_err=p_err, a=a, b=b, n_particles=8, iters=5)(x, y, target=t)
    with torch.no_grad():
        logits = (r.adv.flatten(1) @ model.W.T + model.c)
    for i in range(len(x)):
        p = [math.exp(v) for v in logits[i].tolist()]
        p = [v / sum(p) for v in p]
        order = sorted(range(4), key=lambda k: -p[k])
        y1, y2 = order[0], order[1]
        yt = int(y[i])
        if t is None:
            f0 = (abs(p[y1] - p[y2]) if y1 == yt else 0.0) if p_err is None else \
                (abs(p[y2] - p_err) if y1 == yt else abs(p[y1] - p_err))
        else:
            tt = int(t[i])
            f0 = abs(p[y1] - p[tt]) if y1 != tt else (0.0 if p_err is None else abs(p[y1] - p_err))
        omega = (r.adv[i] - x[i]).flatten().norm().item()
        assert float(r.extras["fitness"][i]) == pytest.approx(a * f0 + b * omega, abs=1e-9)
        assert float(r.extras["f0"][i]) == pytest.approx(f0, abs=1e-9)


# --- the call's contract --------------------------------------------------------------------

def test_modes_and_requires_grad_restored_and_x_untouched():
    torch.manual_seed(0)
    model = Flaky().train()
    model.bn.eval()  # a mixed mode on purpose
    model.fc.weight.requires_grad_(False)
    x = torch.rand(3, 1, 4, 4)
    x0 = x.clone()
    modes = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    storage = [(p.data_ptr(), p.stride()) for p in model.parameters()]
    # 900 candidates: the runner measures, and may swap channels-last weights in per forward
    r = FIPSO(model, m=3, pixels="gradient", n_particles=300, iters=2)(x, torch.tensor([0, 1, 2]))
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == grads
    assert [(p.data_ptr(), p.stride()) for p in model.parameters()] == storage
    assert torch.equal(x, x0)
    assert r.adv.dtype == x.dtype and r.adv.device == x.device


def test_result_fields_shapes_and_norms(lin):
    model, x, y = lin
    r = FIPSO(model, m=4, pixels="fi", n_particles=6, iters=3, seed=3)(x, y)
    B = len(x)
    for f in ("success", "pred", "prob_true", "prob_target", "queries", "gradients", "iterations", "l0", "l2",
              "linf"):
        assert getattr(r, f).shape == (B,), f
    assert r.probs.shape == (B, 4)
    assert torch.allclose(r.probs.sum(1), torch.ones(B, dtype=r.probs.dtype), atol=1e-5)
    assert torch.equal(r.pred, r.probs.argmax(1))
    assert torch.allclose(r.prob_true, r.probs.gather(1, r.y[:, None])[:, 0])
    assert bool(r.prob_target.isnan().all())  # no target asked
    assert (r.l0 <= 4).all()
    assert torch.allclose(r.l2, r.perturbation.flatten(1).double().norm(dim=1))
    assert r.adv.min() >= 0 and r.adv.max() <= 1
    assert r.attack == "fipso" and r.options["m"] == 4 and r.seed == 3
    assert set(r.versions) == {"pyadv", "torch"}
    # 6 particles x (3 iterations + the initial swarm) + the final check, plus the FI passes.
    assert (r.queries >= 6 * 4 + 1).all()
    assert (r.gradients == 3).all()  # FI: K - 1 backward passes per image
    assert r.extras["m"].tolist() == [4] * B


def test_every_pixel_stays_in_the_eps_box(lin):
    model, x, y = lin
    eps = 0.3
    r = FIPSO(model, eps=eps, n_particles=10, iters=5)(x, y)
    d = r.perturbation
    assert (d >= -eps * x - 1e-12).all() and (d <= eps * (1 - x) + 1e-12).all()


def test_explicit_pixels_are_the_only_ones_changed(lin):
    model, x, y = lin
    r = FIPSO(model, pixels=[0, 5, 9], n_particles=6, iters=3)(x, y)
    changed = (r.perturbation.flatten(1) != 0)
    assert not changed[:, [i for i in range(16) if i not in (0, 5, 9)]].any()
    assert r.extras["pixels"].tolist() == [[0, 5, 9]] * len(x)


def test_summary_and_indexing(lin):
    model, x, y = lin
    r = FIPSO(model, n_particles=10, iters=10)(x, y)
    s = r.summary()
    assert s["images"] == len(x) and s["successes"] == int(r.success.sum())
    if s["successes"]:
        assert s["queries_per_success"] == pytest.approx(int(r.queries.sum()) / s["successes"])
        assert s["l2"]["median"] == pytest.approx(float(r.l2[r.success].median()))
    sub = r[r.success]
    assert len(sub) == s["successes"] and bool(sub.success.all())
    assert torch.equal(sub.extras["m"], r.extras["m"][r.success])
    one = r[2]
    assert len(one) == 1 and torch.equal(one.adv, r.adv[2:3])


def test_save_load_round_trip(lin, tmp_path):
    model, x, y = lin
    r = FIPSO(model, m=3, n_particles=6, iters=3)(x, y, target=(y + 1) % 4)
    path = tmp_path / "r.safetensors"
    r.save(path)
    back = AttackResult.load(path)
    assert back.equal(r)
    assert back.options == r.options and back.precision == r.precision
    # no pickle anywhere: the file is a safetensors file with JSON metadata
    assert path.read_bytes()[8:9] == b"{"


def test_load_refuses_other_files(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "other.safetensors"
    save_file({"a": torch.zeros(2)}, str(p))
    with pytest.raises(ValueError, match="not a saved pyadv AttackResult"):
        AttackResult.load(p)


def test_quantize_gives_multiples_of_1_255_and_rechecks(lin):
    model, x, y = lin
    r = FIPSO(model, m=3, n_particles=10, iters=5, quantize=True)(x, y)
    k = r.adv * 255
    assert torch.allclose(k, k.round(), atol=1e-9)
    # the clean images are taken to 8 bits as well, so only the attacked pixels differ
    assert torch.allclose(r.x * 255, (r.x * 255).round(), atol=1e-9) and (r.x - x).abs().max() <= 0.5 / 255
    assert (r.l0 <= 3).all()
    with torch.no_grad():
        pred = model(r.adv).argmax(1)
    assert torch.equal(r.success, pred != y)
    assert torch.equal(quantize(torch.tensor([0.0, 0.5, 1.0, 0.002])) * 255,
                       torch.tensor([0.0, 128.0, 255.0, 1.0]))


def test_same_seed_same_result_and_index_keys(lin):
    model, x, y = lin
    atk = FIPSO(model, m=6, n_particles=8, iters=6, seed=5)
    r1, r2 = atk(x, y), atk(x, y)
    assert r1.equal(r2)
    # An image's result depends on its global index, not its position in the batch.
    part = atk(x[3:], y[3:], index=torch.arange(3, len(x)))
    assert torch.equal(part.adv, r1.adv[3:])
    other = FIPSO(model, m=6, n_particles=8, iters=6, seed=6)(x, y)
    assert not torch.equal(other.adv, r1.adv)


def test_registry():
    assert "fipso" in available()
    model = Linear()
    atk = create("fipso", model, m=2, n_particles=3, iters=1)
    assert isinstance(atk, FIPSO) and atk.options.m == 2
    with pytest.raises(ValueError, match="unknown attack 'nope'"):
        create("nope", model)
    assert "p_err" in FIPSO.option_names()


def test_empty_batch(lin):
    model, _, _ = lin
    r = FIPSO(model, n_particles=4, iters=2)(torch.zeros(0, 1, 4, 4, dtype=torch.float64), torch.zeros(0).long())
    assert len(r) == 0 and r.summary()["images"] == 0


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("opts, match", [
    ({"m": 0}, "m=0"),
    ({"p_err": 0.4}, "p_err=0.4"),
    ({"p_err": 1.0}, "p_err=1.0"),
    ({"eps": 0}, "eps=0"),
    ({"n_particles": 1}, "n_particles=1"),
    ({"iters": 0}, "iters=0"),
    ({"pixels": [1, 1, 2]}, "distinct"),
    ({"pixels": [-1, 2]}, "indices >= 0"),
    ({"pixels": "best"}, "pixels='best'"),
    ({"stop": "never"}, "stop='never'"),
    ({"fi_pixel": 0.1, "m": 3}, "fi_pixel"),
    ({"fi_pixel": 0.1, "pixels": "gradient"}, "fi_pixel"),
    ({"precision": "int8"}, "precision"),
    ({"colour": 1}, "unknown option"),
])
def test_bad_options_name_the_option(opts, match):
    with pytest.raises(ValueError, match=match):
        FIPSO(Linear(), **opts)


def test_bad_call_inputs(lin):
    model, x, y = lin
    atk = FIPSO(model, n_particles=3, iters=1)
    with pytest.raises(ValueError, match="m=17"):
        FIPSO(model, m=17)(x, y)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        FIPSO(model, pixels=[3, 16])(x, y)
    with pytest.raises(ValueError, match="target equals the label"):
        atk(x, y, target=y)
    with pytest.raises(ValueError, match="target must hold classes"):
        atk(x, y, target=torch.full_like(y, 7))
    with pytest.raises(ValueError, match=r"y must be an integer class or \[6\]"):
        atk(x, y[:3])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        atk(x + 2, y)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        atk(bad, y)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        atk(x[0], y)

    class Flat(nn.Module):
        def forward(self, x):
            return x.flatten()

    with pytest.raises(ValueError, match=r"logits \[N, K\]"):
        FIPSO(Flat())(x, y)


# --- the runner -----------------------------------------------------------------------------

def test_runner_sparse_matches_direct_forward_and_counts(lin):
    model, x, _ = lin
    g = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(16, generator=g)[:5] for _ in range(len(x))])
    vals = torch.rand(len(x), 7, 5, generator=g, dtype=x.dtype) - 0.5
    owners = torch.tensor([5, 4, 3, 2, 1, 0])
    for chunk in (1, 3, 7, 9, 13, 50):  # one candidate at a time, parts of images across their ends, whole
        run = ModelRunner(model, x[:1], len(x), chunk_size=chunk)
        p = run.probs_sparse(x, idx, vals, owners)
        imgs = x.flatten(1)[:, None].repeat(1, 7, 1)
        imgs.scatter_add_(2, idx[:, None].expand(-1, 7, -1), vals)
        ref = torch.softmax(model(imgs.clamp(0, 1).view(-1, 1, 4, 4)), 1).view(len(x), 7, -1)
        assert torch.allclose(p, ref, atol=1e-12), chunk
        assert run.queries.tolist() == [7] * 6


def test_runner_measures_a_chunk_within_the_budget():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 26 * 26, 10)).eval()
    x = torch.rand(1, 1, 28, 28)
    run = ModelRunner(model, x, 1)
    chunk, cl = run.plan(10_000)
    assert chunk in (32, 64, 128, 256, 512)
    act = activation_bytes_per_image(model, x)
    assert act >= 4 * 8 * 26 * 26
    tight = ModelRunner(model, x, 1, memory_budget=2 * act * 40)
    assert tight.plan(10_000)[0] <= 40


def test_bf16_search_is_checked_in_float32(digits_cnn):
    from pyadv.data import digits

    x, y = digits("test", 28)
    x, y = x[:6], y[:6]
    r = FIPSO(digits_cnn, m=20, pixels="gradient", n_particles=20, iters=10, precision="bf16",
              stop="first_success")(x, y)
    assert r.precision["search"] == "bf16"
    with torch.no_grad():
        pred = digits_cnn(r.adv).argmax(1)
    assert torch.equal(r.success, pred != y)  # the reported success is the float32 one
    s = r.extras["search_success"]
    assert r.precision["failed_check"] == int((s & ~r.success).sum())


def test_runner_never_uses_channels_last_on_a_model_that_views():
    class Viewing(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            h = self.conv(x)
            return self.fc(h.view(len(h), -1))  # .view fails on channels-last outputs

    model = Viewing().eval()
    run = ModelRunner(model, torch.rand(1, 1, 6, 6), 1)
    assert run.plan(10_000)[1] is False
    r = FIPSO(model, m=4, n_particles=300, iters=1)(torch.rand(2, 1, 6, 6), torch.tensor([0, 1]))
    assert len(r) == 2


@pytest.mark.parametrize("ahead", [True, False], ids=["rendered-ahead", "rendered-per-forward"])
def test_runner_flat_chunks_cover_every_candidate_once(ahead, monkeypatch):
    """Chunks cut the b*N candidates across image boundaries: every split gives the same
    probabilities as rendering each candidate by hand, whether the candidates are rendered all
    at once (small images) or per forward."""
    import itertools

    from pyadv.attacks import _runner

    if not ahead:
        monkeypatch.setattr(_runner, "_RENDER_AHEAD_BYTES", 0)

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double().eval()
    g = torch.Generator().manual_seed(0)
    for b, N, chunk in itertools.product([1, 2, 5], [1, 3, 7], [1, 2, 4, 5, 8, 21, 100]):
        x = torch.rand(b, 1, 4, 4, generator=g, dtype=torch.float64)
        idx = torch.stack([torch.randperm(16, generator=g)[:3] for _ in range(b)])
        v = torch.rand(b, N, 3, generator=g, dtype=torch.float64) - 0.5
        p = ModelRunner(model, x[:1], b, chunk_size=chunk).probs_sparse(x, idx, v, torch.arange(b))
        imgs = x.flatten(1)[:, None].repeat(1, N, 1)
        imgs.scatter_add_(2, idx[:, None].expand(-1, N, -1), v)
        ref = torch.softmax(model(imgs.clamp(0, 1).view(-1, 1, 4, 4)), 1).view(b, N, -1)
        assert torch.allclose(p, ref, atol=1e-12), (b, N, chunk)


@pytest.mark.parametrize("ahead", [True, False], ids=["rendered-ahead", "rendered-per-forward"])
def test_runner_needed_pixel_candidates_only(ahead, monkeypatch):
    """probs_pixels with ``need``: the marked candidates exactly as without it, NaN for the
    others, and only the marked ones counted as queries, for any chunk size, whether rendered
    all at once or per forward."""
    from pyadv.attacks import _runner

    if not ahead:
        monkeypatch.setattr(_runner, "_RENDER_AHEAD_BYTES", 0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(32, 4)).double().eval()
    g = torch.Generator().manual_seed(1)
    b, N = 4, 6
    x = torch.rand(b, 2, 4, 4, generator=g, dtype=torch.float64)
    cand = torch.cat([torch.randint(0, 4, (b, N, 2), generator=g).double(),
                      torch.rand(b, N, 2, generator=g, dtype=torch.float64)], -1)
    need = torch.rand(b, N, generator=g) < 0.5
    need[2] = False  # an image with nothing to evaluate
    for chunk in (1, 3, 7, 100):
        full_runner = ModelRunner(model, x[:1], b, chunk_size=chunk)
        full = full_runner.probs_pixels(x, cand, torch.arange(b))
        run = ModelRunner(model, x[:1], b, chunk_size=chunk)
        part = run.probs_pixels(x, cand, torch.arange(b), need=need)
        assert torch.allclose(part[need], full[need], atol=1e-12, rtol=0) and torch.isnan(part[~need]).all()
        assert torch.equal(run.queries, need.sum(1))
    with pytest.raises(ValueError, match="need must be"):
        run.probs_pixels(x, cand, torch.arange(b), need=need[:, :2])
