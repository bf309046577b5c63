"""FGS, FGV, BIM, ILLC and PGD against the formulas, written out with brute-force autograd on a
linear model (float64) and checked for their balls and counts on the digits CNN."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyadv.attacks import APGD, BIM, FGS, FGV, ILLC, PGD, create
from pyadv.attacks.gradient import apgd_checkpoints
from small_models import Linear


@pytest.fixture
def lin():
    model = Linear()
    x = 0.2 + 0.6 * torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def grad_ce(model, x, cls):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), cls, reduction="sum"), x)
    return g


def test_fgs_inverse_and_least_likely_top5(lin):
    model, x, y = lin
    eps = 0.05
    r = FGS(model, eps=eps)(x, y)
    assert torch.allclose(r.adv, (x + eps * grad_ce(model, x, y).sign()).clamp(0, 1))
    with torch.no_grad():
        ll5 = model(x).softmax(1).topk(5, 1).indices[:, -1]
    r = FGS(model, eps=eps, direction="least_likely_top5")(x, y)
    assert torch.equal(r.extras["step_class"], ll5)
    assert torch.allclose(r.adv, (x - eps * grad_ce(model, x, ll5).sign()).clamp(0, 1))
    t = (y + 1) % 6
    r = FGS(model, eps=eps)(x, y, target=t)
    assert torch.allclose(r.adv, (x - eps * grad_ce(model, x, t).sign()).clamp(0, 1))
    assert (r.gradients == 1).all() and (r.queries == 2).all()  # the gradient pass, the check
    r = FGS(model, eps=eps, direction="least_likely_top5")(x, y)
    assert (r.gradients == 1).all() and (r.queries == 3).all()  # and the clean probabilities for the top 5


def test_fgv_scales_the_raw_gradient(lin):
    model, x, y = lin
    g = grad_ce(model, x, y)
    r = FGV(model, eps=0.05)(x, y)
    expect = x + 0.05 * g / g.flatten(1).abs().amax(1).view(-1, 1, 1, 1)
    assert torch.allclose(r.adv, expect.clamp(0, 1))
    assert torch.allclose(r.linf, torch.full_like(r.linf, 0.05))  # interior images: nothing clipped
    r = FGV(model, eps=0.5, norm="l2")(x, y)
    assert torch.allclose(r.l2, torch.full_like(r.l2, 0.5))


def test_bim_is_the_clipped_iteration(lin):
    model, x, y = lin
    eps, alpha = 4 / 255, 1 / 255
    assert BIM(model, eps=eps).options.n_steps() == 5      # min(4 + 4, 1.25 * 4)
    assert BIM(model, eps=16 / 255).options.n_steps() == 20  # min(20, 20)
    r = BIM(model, eps=eps, alpha=alpha)(x, y)
    adv = x.clone()
    for _ in range(5):
        adv = adv + alpha * grad_ce(model, adv, y).sign()
        adv = torch.minimum(torch.maximum(adv, x - eps), x + eps).clamp(0, 1)
    assert torch.allclose(r.adv, adv)
    assert (r.linf <= eps + 1e-12).all() and (r.gradients == 5).all()


def test_illc_descends_the_least_likely_class(lin):
    model, x, y = lin
    with torch.no_grad():
        ll = model(x).argmin(1)
    r = ILLC(model, eps=4 / 255, alpha=1 / 255)(x, y)
    assert torch.equal(r.extras["step_class"], ll)
    adv = x.clone()
    for _ in range(5):
        adv = adv - (1 / 255) * grad_ce(model, adv, ll).sign()
        adv = torch.minimum(torch.maximum(adv, x - 4 / 255), x + 4 / 255).clamp(0, 1)
    assert torch.allclose(r.adv, adv)


@pytest.mark.parametrize("norm, eps", [("linf", 0.03), ("l2", 0.4)])
def test_pgd_stays_in_its_ball_and_restarts_only_help(lin, norm, eps):
    model, x, y = lin
    one = PGD(model, norm=norm, eps=eps, steps=5, seed=2)(x, y)
    three = PGD(model, norm=norm, eps=eps, steps=5, seed=2, restarts=3)(x, y)
    for r in (one, three):
        size = r.linf if norm == "linf" else r.l2
        assert (size <= eps * (1 + 1e-9)).all()
    assert not (one.success & ~three.success).any()
    both_fail = ~one.success & ~three.success
    with torch.no_grad():
        ce1 = F.cross_entropy(model(one.adv), y, reduction="none")
        ce3 = F.cross_entropy(model(three.adv), y, reduction="none")
    assert (ce3[both_fail] >= ce1[both_fail] - 1e-12).all()
    assert (three.gradients == 15).all() and (one.gradients == 5).all()


def test_pgd_first_success_stops_images_early(digits_cnn):
    from pyadv.data import digits

    x, y = digits("test", 28)
    x, y = x[:16], y[:16]
    full = PGD(digits_cnn, norm="l2", eps=1.5, steps=10)(x, y)
    fast = PGD(digits_cnn, norm="l2", eps=1.5, steps=10, stop="first_success")(x, y)
    assert fast.success.sum() >= 0.8 * full.success.sum()
    assert fast.queries.sum() < full.queries.sum()
    assert (fast.pred[fast.success] != y[fast.success]).all()
    t = (y + 1) % 10
    tg = PGD(digits_cnn, norm="l2", eps=3.0, steps=20, stop="first_success")(x, y, target=t)
    assert torch.equal(tg.success, tg.pred == t) and tg.success.any()


def test_registry_and_bad_options(lin):
    model, x, y = lin
    assert {"fgs", "fgv", "bim", "illc", "pgd"} <= set(__import__("pyadv.attacks", fromlist=["x"]).available())
    assert isinstance(create("pgd", model, loss="cw"), PGD)
    for c in (FGS, FGV, BIM, PGD):
        assert torch.equal(c(model, eps=0.0)(x, y).adv, x)  # eps = 0 returns the clean images
    for cls, opts, match in [(FGS, {"eps": -0.1}, "eps=-0.1"), (FGS, {"direction": "up"}, "direction='up'"),
                             (FGV, {"norm": "l1"}, "norm='l1'"), (BIM, {"steps": 0}, "steps=0"),
                             (PGD, {"restarts": 0}, "restarts=0"), (PGD, {"loss": "dlr"}, "loss='dlr'"),
                             (PGD, {"stop": "never"}, "stop='never'"), (PGD, {"alpha": -1.0}, "alpha=-1.0"),
                             (PGD, {"alpha": 0.0}, "alpha=0.0"), (APGD, {"eps": -1.0}, "eps=-1.0"),
                             (APGD, {"norm": 1}, "norm=1"), (PGD, {"norm": True}, "norm=True"),
                             (APGD, {"steps": 0}, "steps=0"), (BIM, {"alpha": 0}, "alpha=0")]:
        with pytest.raises(ValueError, match=match):
            cls(model, **opts)
    # the other libraries' spellings of the two norms
    for v, norm in [(float("inf"), "linf"), ("Linf", "linf"), ("inf", "linf"), (2, "l2"), ("L2", "l2"), (2.0, "l2")]:
        assert PGD(model, norm=v).options.norm == norm and APGD(model, norm=v).options.norm == norm
    # targets: equal to the label, or out of range
    with pytest.raises(ValueError, match="target equals the label"):
        PGD(model, steps=1)(x, y, target=y)
    with pytest.raises(ValueError, match=r"target must hold classes in \[0, 6\)"):
        PGD(model, steps=1)(x, y, target=torch.full_like(y, 6))


@pytest.mark.slow
def test_pgd_at_eps_03_fools_the_digits_cnn(digits_cnn):
    from pyadv.data import digits

    x, y = digits("test", 28)
    with torch.no_grad():
        ok = digits_cnn(x).argmax(1) == y
    x, y = x[ok][:64], y[ok][:64]
    r = PGD(digits_cnn, eps=0.3, steps=20, stop="first_success")(x, y)
    assert r.success.float().mean() >= 0.99


def test_agrees_with_torchattacks():
    """FGSM exactly; BIM and PGD without random start within 1e-5. Definitions differ in one
    place: our PGD returns each image's highest-loss iterate (Madry et al.), torchattacks' the
    last; on a linear model the cross-entropy grows at every step inside the ball, so both
    are the last iterate here."""
    import torchattacks  # installed by the Makefile with --no-deps (it declares torchvision)

    model = Linear().float()
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = 0.03
    ta = torchattacks.FGSM(model, eps=eps)(x, y)
    assert torch.equal(FGS(model, eps=eps)(x, y).adv, ta)
    ta = torchattacks.BIM(model, eps=eps, alpha=1 / 255, steps=0)(x, y)  # steps=0: Kurakin's schedule
    assert torch.allclose(BIM(model, eps=eps, alpha=1 / 255)(x, y).adv, ta, atol=1e-5)
    ta = torchattacks.PGD(model, eps=eps, alpha=0.01, steps=7, random_start=False)(x, y)
    ours = PGD(model, eps=eps, alpha=0.01, steps=7, random_start=False)(x, y).adv
    assert torch.allclose(ours, ta, atol=1e-5)


def test_apgd_checkpoints_as_published():
    from pyadv.attacks.gradient import apgd_checkpoints

    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06))
    assert apgd_checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]


class Constant(nn.Module):
    """Logits that do not depend on the image: the loss never rises."""

    def __init__(self):
        super().__init__()
        self.z = nn.Parameter(torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float64))

    def forward(self, x):
        return self.z.expand(len(x), -1) + 0 * x.flatten(1).sum(1, keepdim=True)


def test_apgd_halving_rule():
    from pyadv.attacks.gradient import apgd_halve

    t = torch.tensor
    span, rho = 19, 0.75  # 0.75 * 19 = 14.25
    raised = t([15.0, 14.0, 15.0, 15.0])
    eta_last, eta = t([0.1, 0.1, 0.1, 0.05]), t([0.1, 0.1, 0.1, 0.1])
    fmax_last, fmax = t([1.0, 1.0, 2.0, 2.0]), t([1.5, 1.5, 2.0, 2.0])
    # rose often and improved: keep; rose too rarely: halve; step and best loss unchanged:
    # halve; best loss unchanged but the step was halved before: keep.
    assert apgd_halve(raised, span, rho, eta_last, eta, fmax_last, fmax).tolist() == [False, True, True, False]


def test_apgd_step_halves_at_every_checkpoint_when_the_loss_never_rises():
    eps = 0.02
    xc = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    for n in (10, 100):
        halvings = len(apgd_checkpoints(n)) - 1
        r = APGD(Constant(), eps=eps, steps=n)(xc, torch.zeros(3, dtype=torch.long))
        assert torch.allclose(r.extras["final_step"], torch.full((3,), 2 * eps / 2 ** halvings))
        assert (r.gradients == n + 1).all()  # restarts from the best point cost no extra pass


def test_apgd_at_least_pgd_at_equal_budget(digits_cnn):
    from pyadv.data import digits

    x, y = digits("test", 28)
    x, y = x[:64], y[:64]
    a = APGD(digits_cnn, eps=0.05, steps=30)(x, y)
    p = PGD(digits_cnn, eps=0.05, steps=30)(x, y)
    assert a.success.sum() >= p.success.sum()  # measured on 128 images, 50 steps: 55 % against 46 %
    assert (a.linf <= 0.05 + 1e-6).all()
    assert (a.gradients == 31).all() and (p.gradients == 30).all()


class TwoClass(nn.Module):
    """logits [w.x + b, 0]: the distance to the boundary is |w.x + b| / ||w||_2."""

    def __init__(self, P=16):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.w = nn.Parameter(torch.randn(P, generator=g, dtype=torch.float64) * 0.5)
        self.b = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([s, torch.zeros_like(s)], 1)


@pytest.mark.parametrize("B", [1, 3, 8])
def test_minimal_search_finds_the_closed_form_distance(B):
    model = TwoClass()
    x = 0.45 + 0.1 * torch.rand(B, 1, 4, 4, generator=torch.Generator().manual_seed(B), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
        margin = (x.flatten(1) @ model.w + model.b).abs()
    r = FGV(model, minimal=True, norm="l2", start=1e-3, bisect=20)(x, y)
    assert r.success.all()
    expect = margin / model.w.detach().norm()
    assert torch.allclose(r.l2, expect, rtol=0.01)
    # one bracket below the returned step is not adversarial (a forward pass says so)
    below = (x + r.extras["scale_below"].double().view(-1, 1, 1, 1) * r.extras["direction"]).clamp(0, 1)
    with torch.no_grad():
        assert (model(below).argmax(1) == y).all()


def test_minimal_search_reports_failure_when_the_label_never_changes():
    class NeverFlips(nn.Module):  # class 0 whatever the image, with a gradient pointing down
        def forward(self, x):
            s = 10 + 0.01 * x.flatten(1).sum(1)
            return torch.stack([s, torch.zeros_like(s)], 1)

    xc = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    r = FGS(NeverFlips(), minimal=True)(xc, torch.zeros(2, dtype=torch.long))
    assert not r.success.any() and r.extras["scale"].isnan().all()
    assert torch.equal(r.adv, torch.zeros_like(xc))  # the last step: the box saturated at 0
    r = FGS(Constant(), minimal=True)(xc, torch.zeros(2, dtype=torch.long))  # no gradient at all
    assert not r.success.any() and torch.equal(r.adv, xc)


def test_minimal_search_in_grey_levels(digits_cnn):
    from pyadv.data import digits

    x, y = digits("test", 28)
    r = FGS(digits_cnn, minimal=True, quantize=True)(x[:8], y[:8])
    k = r.adv * 255
    assert torch.allclose(k, k.round(), atol=1e-4)
    s = r.extras["scale"][r.success]
    assert torch.equal(s, s.round())  # whole grey levels
    assert r.success.sum() >= 6


@pytest.mark.parametrize("name", ["bim", "pgd", "apgd", "fgs"])
def test_chunked_gradients_equal_one_pass(lin, name):
    """chunk_size smaller than the batch: the loss of each chunk sees its own classes."""
    model, x, y = lin
    opts = {"steps": 3} if name != "fgs" else {}
    whole = create(name, model, **opts)(x, y)
    chunked = create(name, model, chunk_size=2, **opts)(x, y)
    assert torch.allclose(whole.adv, chunked.adv, atol=1e-12)
    t = (y + 1) % 6
    assert torch.allclose(create(name, model, **opts)(x, y, target=t).adv,
                          create(name, model, chunk_size=2, **opts)(x, y, target=t).adv, atol=1e-12)


@pytest.mark.slow
def test_apgd_as_strong_as_torchattacks_apgd(digits_cnn):
    """torchattacks' APGD is AutoAttack's code; ours follows the paper. They cannot agree
    image by image: its L-inf start is eps t / max|t| (t uniform in [-1, 1]^n), ours uniform in
    the ball; its checkpoints are int(0.22 N), then steps shrinking by int(0.03 N) to at least
    int(0.06 N) (equal to ceil(p_j N) at N = 100, not at every N); its first window compares step
    0 with an unset entry (always a rise) and condition 2 cannot fire at the first checkpoint;
    it halves at <= rho k rises, ours at < rho k as published; after a halving its momentum
    term spans the jump back to the best point, ours restarts with none; it returns the clean
    image where it fails, ours the highest-loss point. So they are compared by strength at
    the same budget: accuracy under attack on 64 digits, ours no more than 2 images higher."""
    import torchattacks
    from pyadv.data import digits

    x, y = digits("test", 28)
    x, y = x[:64], y[:64]
    eps, steps = 0.05, 25  # about half the images fall (29 of 64 for both when written)
    ours = APGD(digits_cnn, eps=eps, steps=steps)(x, y).success
    ta = torchattacks.APGD(digits_cnn, eps=eps, steps=steps, loss="ce", seed=0)(x, y)
    with torch.no_grad():
        theirs = digits_cnn(ta).argmax(1) != y
    assert 0.1 < theirs.float().mean() < 0.95  # a budget where the attacks can differ
    assert int(ours.sum()) >= int(theirs.sum()) - 2


def test_bim_least_likely_of_the_top5(lin):
    """Possas's iterative variant: descend the loss of the clean image's least likely top-5 class."""
    model, x, y = lin
    with torch.no_grad():
        ll5 = model(x).softmax(1).topk(5, 1).indices[:, -1]
    eps, alpha = 0.05, 0.01
    r = BIM(model, eps=eps, alpha=alpha, steps=3, direction="least_likely_top5")(x, y)
    adv = x.clone()
    for _ in range(3):
        adv = torch.minimum(torch.maximum(adv - alpha * grad_ce(model, adv, ll5).sign(), x - eps), x + eps).clamp(0, 1)
    assert torch.equal(r.extras["step_class"], ll5) and torch.allclose(r.adv, adv)
    with pytest.raises(ValueError, match="unknown option"):
        ILLC(model, direction="inverse")
