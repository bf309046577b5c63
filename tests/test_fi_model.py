"""FI on models (pyadv.fi) against brute force in float64: the full P x P metric G = L D L^T
and its pseudo-inverse, built from autograd Jacobians, on real 8x8 digits (P = 64)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyadv import fi
from pyadv.data import digits


class SmallCNN(nn.Module):
    def __init__(self, channels=1, classes=10, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(channels, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(6 * 16, classes)
        with torch.no_grad():
            self.bn.running_mean.normal_(0, 0.1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        h = torch.tanh(self.bn(self.conv(x)))
        return self.fc(self.drop(F.avg_pool2d(h, 2).flatten(1)))


class ThreeFeatures(nn.Module):
    """K = 10 logits that depend on only 3 directions of the input: Jacobian rank <= 3."""

    def __init__(self, P=64, seed=1):
        super().__init__()
        torch.manual_seed(seed)
        self.a = nn.Linear(P, 3)
        self.b = nn.Linear(3, 10)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x.flatten(1))))


def digits8(n=6, channels=1):
    x, y = digits("test", 8, dtype=torch.float64)
    x, y = x[:n], y[:n]
    if channels == 3:  # an RGB stand-in: the digit tinted differently per channel
        x = torch.cat([x, x.flip(-1), x.transpose(-1, -2)], 1)
    return x, y


def brute_force(model, x, t):
    """Per image: L [P, K] by autograd, G = L diag(P) L^T, then per-pixel, per-group and
    image-level FI with torch.linalg.pinv."""
    model.eval()
    per_pixel, grouped, image = [], [], []
    C = x.shape[1]
    for b in range(len(x)):
        f = lambda z: F.log_softmax(model(z[None]), 1)[0]
        L = torch.autograd.functional.jacobian(f, x[b]).reshape(-1, x[b].numel()).T   # [P, K]
        p = f(x[b]).exp().detach()
        G = L @ torch.diag(p) @ L.T
        l = L[:, t[b]]
        per_pixel.append(torch.where(G.diagonal() > 0, l**2 / G.diagonal(), torch.zeros_like(l)))
        HW = x[b].numel() // C
        idx = torch.arange(C)[:, None] * HW + torch.arange(HW)[None]                  # [C, HW]
        grouped.append(torch.stack([l[idx[:, i]] @ torch.linalg.pinv(G[idx[:, i]][:, idx[:, i]], hermitian=True)
                                    @ l[idx[:, i]] for i in range(HW)]))
        image.append(l @ torch.linalg.pinv(G, hermitian=True, rtol=1e-10) @ l)
    return torch.stack(per_pixel).view_as(x), torch.stack(grouped), torch.stack(image)


@pytest.fixture(scope="module")
def small():
    return SmallCNN().double().eval()


@pytest.mark.parametrize("targeted", [False, True])
def test_pixel_and_image_fi_match_brute_force(small, targeted):
    x, y = digits8()
    target = (y + 3) % 10 if targeted else None
    t = y if target is None else target
    pix, _, img = brute_force(small, x, t)
    torch.testing.assert_close(fi.pixel_fi(small, x, y, target), pix, rtol=1e-8, atol=0)
    torch.testing.assert_close(fi.image_fi(small, x, y, target, exact=True), img, rtol=1e-8, atol=0)
    # Generic model: the rank is K - 1 and the closed form agrees.
    closed = fi.image_fi(small, x, y, target)
    torch.testing.assert_close(closed, img, rtol=1e-8, atol=0)
    _, rank = fi.image_fi(small, x, y, target, exact=True, return_rank=True)
    assert rank.tolist() == [9] * len(x)


def test_group_pixel_on_rgb_matches_brute_force():
    model = SmallCNN(channels=3, seed=3).double().eval()
    x, y = digits8(4, channels=3)
    _, grouped, _ = brute_force(model, x, y)
    got = fi.pixel_fi(model, x, y, group="pixel")
    assert got.shape == (4, 1, 8, 8)
    torch.testing.assert_close(got.flatten(1), grouped, rtol=1e-8, atol=1e-12)


def test_rank_deficient_model_differs_from_closed_form():
    model = ThreeFeatures().double().eval()
    x, y = digits8()
    _, _, img = brute_force(model, x, y)
    exact, rank = fi.image_fi(model, x, y, exact=True, return_rank=True)
    torch.testing.assert_close(exact, img, rtol=1e-8, atol=0)
    assert rank.tolist() == [3] * len(x)
    closed = fi.image_fi(model, x, y)
    assert torch.all(exact < closed * (1 - 1e-3))  # the closed form assumes rank K - 1


def test_relu_cut_off_lowers_the_rank():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.ReLU(), nn.Linear(6, 10)).double().eval()
    with torch.no_grad():
        model[1].bias[:4] = -100.0  # four of six hidden units are dead on [0, 1] inputs
        model[1].bias[4:] = 100.0   # and two always live
    x, y = digits8()
    exact, rank = fi.image_fi(model, x, y, exact=True, return_rank=True)
    assert rank.tolist() == [2] * len(x)
    _, _, img = brute_force(model, x, y)
    torch.testing.assert_close(exact, img, rtol=1e-8, atol=0)


def sa_dnn_svd(model, x, t, eps=1e-3, tol=1e-3):
    """The authors' recipe re-implemented: the softmax (probability) Jacobian, per pixel the
    K x 1 matrix A_k = dP_k / (sqrt(P_k) + eps), its SVD with singular values <= tol cut,
    and the objective's gradient dP_t / (P_t + eps)."""
    out = []
    for b in range(len(x)):
        f = lambda z: torch.softmax(model(z[None]), 1)[0]
        Jp = torch.autograd.functional.jacobian(f, x[b]).reshape(-1, x[b].numel())   # [K, P]
        p = f(x[b]).detach()
        row = []
        for i in range(Jp.shape[1]):
            A = (Jp[:, i] / (p.sqrt() + eps))[:, None]                                 # [K, 1]
            U, S, Vh = torch.linalg.svd(A, full_matrices=False)
            g = Jp[t[b], i] / (p[t[b]] + eps)
            keep = S > tol
            row.append(((g * Vh[keep, 0]) ** 2 / S[keep] ** 2).sum())
        out.append(torch.stack(row))
    return torch.stack(out).view_as(x)


def test_sa_dnn_convention_reproduces_their_svd_recipe(small):
    x, y = digits8(4)
    torch.testing.assert_close(fi.pixel_fi(small, x, y, convention="sa_dnn"), sa_dnn_svd(small, x, y),
                               rtol=1e-6, atol=1e-9)


def test_sa_dnn_differs_from_exact_only_by_the_guards(small):
    # With the guards taken to ~0 the authors' recipe is eq. (1): the difference between the
    # conventions is the eps and the cut-off, nothing else.
    x, y = digits8(3)
    nearly = sa_dnn_svd(small, x, y, eps=1e-9, tol=0.0)
    torch.testing.assert_close(nearly, fi.pixel_fi(small, x, y), rtol=1e-6, atol=1e-12)
    # The cut-off zeroes exactly the pixels whose scaled gradient norm is <= 1e-3.
    sa = fi.pixel_fi(small, x, y, convention="sa_dnn")
    jac, probs = fi.log_prob_jacobian(small, x)
    w = (probs / (probs.sqrt() + 1e-3)) ** 2
    cut = (w[:, :, None] * jac**2).sum(1).sqrt() <= 1e-3
    assert torch.equal(sa.flatten(1) == 0, cut | (fi.pixel_fi(small, x, y).flatten(1) == 0))


def test_topk_with_all_classes_equals_exact(small):
    x, y = digits8()
    exact = fi.pixel_fi(small, x, y)
    topk, info = fi.pixel_fi(small, x, y, fisher="topk", k=10, return_info=True)
    torch.testing.assert_close(topk, exact, rtol=1e-10, atol=0)
    assert torch.all(info["left_out_mass"].abs() < 1e-12)


def test_topk_is_an_upper_bound_that_tightens_with_k(small):
    x, y = digits8()
    exact = fi.pixel_fi(small, x, y)
    errors = []
    for k in (1, 3, 6):
        approx, info = fi.pixel_fi(small, x, y, fisher="topk", k=k, return_info=True)
        assert torch.all(approx >= exact * (1 - 1e-9))
        assert torch.all((info["left_out_mass"] >= 0) & (info["left_out_mass"] < 1))
        errors.append(float((approx - exact).abs().sum()))
    assert errors[0] > errors[1] > errors[2]


def test_sampled_converges_to_exact(small):
    x, y = digits8(3)
    exact = fi.pixel_fi(small, x, y)
    mask = exact > 1e-3 * exact.amax()
    err = {}
    for S in (20, 2000):
        approx = fi.pixel_fi(small, x, y, fisher="sampled", samples=S, seed=1)
        err[S] = float(((approx - exact).abs() / exact)[mask].median())
    assert err[2000] < err[20] and err[2000] < 0.05
    again = fi.pixel_fi(small, x, y, fisher="sampled", samples=20, seed=1)
    assert torch.equal(again, fi.pixel_fi(small, x, y, fisher="sampled", samples=20, seed=1))


def test_sampled_metric_is_unbiased(small):
    # The mean over seeds of the sampled G (visible through FI = J_t^2 / G) approaches G.
    x, y = digits8(2)
    exact = fi.pixel_fi(small, x, y)
    jac, probs = fi.log_prob_jacobian(small, x)
    jt2 = jac.gather(1, y[:, None, None].expand(-1, 1, jac.shape[2])).squeeze(1) ** 2
    mask = (exact.flatten(1) > 1e-6) & (jt2 > 1e-12)
    G_est = torch.stack([jt2 / fi.pixel_fi(small, x, y, fisher="sampled", samples=5, seed=s).flatten(1)
                         for s in range(400)]).mean(0)
    G = jt2 / exact.flatten(1)
    assert float(((G_est - G).abs() / G)[mask].median()) < 0.05


@pytest.mark.parametrize("strategy", ["loop", "batched", "vmap"])
def test_strategies_agree(small, strategy):
    x, y = digits8(5)
    ref = fi.pixel_fi(small, x, y, strategy="loop", sub_batch=5)
    torch.testing.assert_close(fi.pixel_fi(small, x, y, strategy=strategy, sub_batch=2, chunk=3), ref,
                               rtol=1e-12, atol=0)


def test_tiny_memory_budget_chunks_instead_of_failing(small):
    x, y = digits8(5)
    _, info = fi.pixel_fi(small, x, y, memory_budget=1, return_info=True)
    assert info["plan"].sub_batch == 1
    torch.testing.assert_close(fi.pixel_fi(small, x, y, memory_budget=1), fi.pixel_fi(small, x, y))
    torch.testing.assert_close(fi.image_fi(small, x, y, exact=True, memory_budget=1),
                               fi.image_fi(small, x, y, exact=True))


def test_auto_plan(small):
    x = torch.rand(300, 1, 8, 8, dtype=torch.float64)
    plan = fi.make_plan(small, x, 10)
    assert plan.strategy == "loop" and plan.sub_batch == 64 and plan.activation_bytes > 0
    assert plan.channels_last  # a conv net that accepts channels-last inputs
    assert fi.make_plan(small, x[:5], 10).sub_batch == 5
    assert not fi.make_plan(ThreeFeatures().double(), x, 10).channels_last  # no convolution


class ViewAfterConv(nn.Module):
    """Calls .view on a conv output, which fails on channels-last tensors."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 64, 10)

    def forward(self, x):
        h = torch.tanh(self.conv(x))
        return self.fc(h.view(h.shape[0], -1))


def test_models_that_reject_channels_last_still_work():
    model = ViewAfterConv().double().eval()
    x, y = digits8(4, channels=3)  # with one channel, channels-last changes nothing
    assert not fi.make_plan(model, x, 9).channels_last
    pix = brute_force(model, x, y)[0]
    torch.testing.assert_close(fi.pixel_fi(model, x, y), pix, rtol=1e-8, atol=0)


def test_memory_formats_agree(small):
    x, y = digits8(5)
    a = fi.pixel_fi(small, x, y, channels_last=True)
    b = fi.pixel_fi(small, x, y, channels_last=False)
    assert a.is_contiguous() and b.is_contiguous()
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_model_state_restored_and_input_untouched(small):
    model = SmallCNN().double().train()
    model.bn.eval()  # a deliberately mixed mode must survive
    model.fc.weight.requires_grad_(False)
    running = model.bn.running_mean.clone()
    modes = [m.training for m in model.modules()]
    x, y = digits8(3)
    x0 = x.clone()
    for call in (lambda: fi.pixel_fi(model, x, y), lambda: fi.image_fi(model, x, y, exact=True),
                 lambda: fi.pixel_fi(model, x, y, fisher="topk", k=2), lambda: fi.jacobian_norm(model, x)):
        call()
        assert [m.training for m in model.modules()] == modes
        assert [p.requires_grad for p in model.parameters()] == [True, True, True, True, False, True]
        assert all(p.grad is None for p in model.parameters())
        assert torch.equal(x, x0) and torch.equal(model.bn.running_mean, running)


def test_comparators_match_autograd(small):
    x, y = digits8(3)
    jn = fi.jacobian_norm(small, x)
    ck = fi.cook_influence(small, x, y)
    for b in range(3):
        Jp = torch.autograd.functional.jacobian(lambda z: torch.softmax(small(z[None]), 1)[0], x[b])
        torch.testing.assert_close(jn[b], Jp.pow(2).sum(0).sqrt(), rtol=1e-10, atol=1e-14)
        g = torch.autograd.functional.jacobian(lambda z: -F.log_softmax(small(z[None]), 1)[0, y[b]], x[b])
        torch.testing.assert_close(ck[b], g**2, rtol=1e-10, atol=1e-14)
    # FI is invariant to rescaling the perturbation; the Euclidean measures are not. The same
    # model read at half scale (z = x / 2, model(2 z)) doubles every input gradient.
    class Half(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, z):
            return self.inner(2 * z)

    half, z = Half(small), x / 2
    torch.testing.assert_close(fi.pixel_fi(half, z, y), fi.pixel_fi(small, x, y), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(fi.cook_influence(half, z, y), 4 * ck, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(fi.jacobian_norm(half, z), 2 * jn, rtol=1e-10, atol=1e-14)


def test_real_model_exact_fi_is_bounded(digits_cnn):
    x, y = digits("test", 28)
    x, y = x[:16], y[:16]
    maps = fi.pixel_fi(digits_cnn, x, y)
    bound = fi.image_fi(digits_cnn, x, y).view(-1, 1, 1, 1)
    assert torch.all(maps <= bound * (1 + 1e-3) + 1e-7)


def test_empty_batch(small):
    x = torch.zeros(0, 1, 8, 8, dtype=torch.float64)
    y = torch.zeros(0, dtype=torch.long)
    assert fi.pixel_fi(small, x, y).shape == (0, 1, 8, 8)
    assert fi.image_fi(small, x, y, exact=True).shape == (0,)


class WrongShape(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10, None]


@pytest.mark.parametrize("call,exc,match", [
    (lambda m, x, y: fi.pixel_fi(m, x * 2, y), ValueError, r"must hold images in \[0, 1\]"),
    (lambda m, x, y: fi.pixel_fi(m, x.index_put((torch.tensor([0]),), torch.tensor(float("nan"), dtype=x.dtype)), y),
     ValueError, "x holds NaN or Inf"),
    (lambda m, x, y: fi.pixel_fi(m, x, y + 10), ValueError, r"y must hold classes in \[0, 10\)"),
    (lambda m, x, y: fi.pixel_fi(m, x, y, target=y), ValueError, "target equals the label for image 0"),
    (lambda m, x, y: fi.image_fi(m, x, y, target=-1), ValueError, r"target must hold classes in \[0, 10\)"),
    (lambda m, x, y: fi.pixel_fi(WrongShape(), x, y), ValueError, "must map .* to logits"),
    (lambda m, x, y: fi.pixel_fi(m, x, y, convention="svd"), ValueError, "convention must be one of"),
    (lambda m, x, y: fi.pixel_fi(m, x, y, fisher="topk"), ValueError, "fisher='topk' needs k"),
    (lambda m, x, y: fi.pixel_fi(m, x, y, fisher="sampled", samples=0), ValueError, "needs samples"),
    (lambda m, x, y: fi.pixel_fi(m, x, y, fisher="topk", k=2, convention="sa_dnn"), ValueError, "use convention='exact'"),
    (lambda m, x, y: fi.pixel_fi(m, x, y, strategy="magic"), ValueError, "strategy must be one of"),
    (lambda m, x, y: fi.pixel_fi(m, x, y, sub_batch=0), ValueError, "sub_batch must be None"),
    (lambda m, x, y: fi.pixel_fi(m, x, y, group="channel"), ValueError, "group must be None or 'pixel'"),
    (lambda m, x, y: fi.pixel_fi(m, x[:, :, :, :], y[:2]), ValueError, r"y must be an integer class or \[3\]"),
])
def test_bad_input(small, call, exc, match):
    x, y = digits8(3)
    with pytest.raises(exc, match=match):
        call(small, x, y)
