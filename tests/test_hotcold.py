"""Hot/cold (paper 001, eq. (7)): the direction against brute-force autograd, the similarity
ranks, HC-1..9 on digits, hard positives, HC-S vs HC-D, PASS filtering, the layer option and
bad input."""
import pytest
import torch
from torch import nn

from pyadv.attacks import FGV, HotCold, direction_names, hot_cold_samples
from pyadv.attacks.gradient import _normalise
from small_models import Linear


@pytest.fixture
def lin():
    model = Linear(P=100, K=5)
    x = 0.3 + 0.4 * torch.rand(4, 1, 10, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@pytest.fixture(scope="module")
def digits20():
    from pyadv.data import digits

    x, y = digits("test", 28)
    return x[:20], y[:20]


def test_direction_is_the_pullback_of_the_hot_cold_vector(lin):
    model, x, y = lin
    r = HotCold(model, pass_scores=False, select="l2", mode="both", bisect=30)(x, y)
    ex = r.extras
    D = ex["dir_adv"].shape[1]
    assert D == 2 * 4 and direction_names(r.options, 5) == [f"HC-{m}-{k}" for m in "DS" for k in (1, 2, 3, 4)]
    with torch.no_grad():
        z = model(x)
    for b in range(len(x)):
        others = [j for j in z[b].argsort(descending=True).tolist() if j != int(y[b])]
        assert ex["dir_hot"][b, :4].tolist() == others  # HC-k: the k-th most similar class
        assert ex["dir_hot"][b, 4:].tolist() == others
        for d in range(D):
            hot = others[d % 4]
            w = torch.zeros(5, dtype=torch.float64)
            w[hot] = z[b, hot].abs()
            w[y[b]] = -z[b, y[b]].abs()
            xb = x[b:b + 1].clone().requires_grad_(True)
            (eta,) = torch.autograd.grad((model(xb) * w).sum(), xb)  # brute force: J^T w
            u = eta.sign() if d >= 4 else _normalise(eta, "linf")
            s = ex["dir_scale"][b, d].double()
            if ex["dir_adversarial"][b, d]:
                assert torch.allclose(ex["dir_adv"][b, d], (x[b] + s * u[0]).clamp(0, 1), atol=1e-6)
    assert torch.equal(r.gradients, torch.full((4,), 4))  # one backward per rank serves D and S


def test_fgv_extra_is_fgv_minimal(lin):
    model, x, y = lin
    r = HotCold(model, classes=1, extra=("fgv",), pass_scores=False, select="l2")(x, y)
    f = FGV(model, minimal=True)(x, y)
    assert direction_names(r.options, 5)[-1] == "FGV"
    # the gradient as softmax - e_y against autograd of the cross-entropy: equal up to rounding
    assert torch.allclose(r.extras["dir_adv"][:, -1], f.adv, atol=1e-9)
    assert torch.equal(r.extras["dir_adversarial"][:, -1], f.success)


def test_hc_1_to_9_on_digits(digits_cnn, digits20):
    x, y = digits20
    # reach="hot": a direction succeeds at its own hot class, so an image's results are all distinct
    r = HotCold(digits_cnn, classes=9, reach="hot", pass_scores=False, select="l2", quantize=True)(x, y)
    ex = r.extras
    assert ex["dir_adv"].shape[:2] == (20, 9)
    ok = ex["dir_adversarial"]
    assert ok.sum() >= 60  # most hot classes are reachable along their own direction
    for b in range(20):
        got = ex["dir_class"][b][ok[b]]
        assert torch.equal(got, ex["dir_hot"][b][ok[b]])
        assert len(set(got.tolist())) == len(got)
    # reach="any" (eq. (5)): every direction finds an adversarial, of several classes per image
    r = HotCold(digits_cnn, classes=9, pass_scores=False, select="l2", quantize=True)(x, y)
    ex = r.extras
    assert ex["dir_adversarial"].float().mean() >= 0.9
    distinct = torch.tensor([len(set(ex["dir_class"][b][ex["dir_adversarial"][b]].tolist())) for b in range(20)])
    assert distinct.float().mean() >= 2
    # every claimed adversarial is one: a forward pass of the model says so
    with torch.no_grad():
        pred = digits_cnn(ex["dir_adv"].flatten(0, 1)).argmax(1).view(20, 9)
    claimed = ex["dir_adversarial"]
    assert torch.equal(pred[claimed], ex["dir_class"][claimed])
    assert (pred[claimed] != y[:, None].expand(20, 9)[claimed]).all()
    k = ex["dir_adv"] * 255
    assert torch.allclose(k, k.round(), atol=1e-4)  # integer pixel values, as the paper


def test_hard_positives_sign_and_pass_filter(digits_cnn, digits20):
    x, y = digits20
    x, y = x[:8], y[:8]
    r = HotCold(digits_cnn, classes=3, mode="both", scales=(1.05, 1.10))(x, y)
    ex = r.extras
    found = ex["dir_adversarial"]
    # hard positives: the found step times the factor, along the same direction
    assert ex["hp_adv"].shape[:3] == (8, 6, 2)
    keep_class = (ex["hp_class"][..., 0] == ex["dir_class"])[found]
    assert keep_class.float().mean() >= 0.9
    assert (ex["hp_l2"][..., 1][found] >= ex["hp_l2"][..., 0][found] - 1e-6).all()
    assert (ex["hp_l2"][..., 0][found] >= ex["dir_l2"][found] - 1e-6).all()
    # HC-S and HC-D differ; a sign direction moves every pixel it moves by the same amount
    assert not torch.equal(ex["dir_adv"][:, :3], ex["dir_adv"][:, 3:])
    # PASS: computed once for the batch; tau removes exactly the results below it
    assert not ex["dir_pass"][found].isnan().any() and ex["dir_pass"][~found].isnan().all()
    tau = float(ex["dir_pass"][found].median())
    rt = HotCold(digits_cnn, classes=3, mode="both", scales=(1.05, 1.10), tau=tau)(x, y)
    et = rt.extras
    assert torch.equal(et["dir_adversarial"], found)
    assert torch.equal(et["dir_success"], found & (ex["dir_pass"] >= tau))
    assert torch.equal(et["hp_keep"], found[..., None] & (ex["hp_pass"] >= tau))
    # the image's adv is its best direction by PASS among the ones kept
    for b in range(8):
        ok = et["dir_success"][b]
        if ok.any():
            best = int(et["dir_pass"][b].masked_fill(~ok, -1).argmax())
            assert int(et["chosen"][b]) == best and torch.equal(rt.adv[b], et["dir_adv"][b, best])
        else:
            assert int(et["chosen"][b]) == -1 and torch.equal(rt.adv[b], x[b])
    # the flat dataset: one row per kept result, named as in the paper
    s = hot_cold_samples(rt)
    n = int(et["dir_success"].sum() + et["hp_keep"].sum())
    assert len(s["kind"]) == n == len(s["images"]) == len(s["label"])
    assert (s["pass"] >= tau).all()
    assert {"HC-D-1", "HC-S-1", "HC-D-1-1.05", "HC-S-3-1.1"} & set(s["kind"])
    only = hot_cold_samples(rt, kinds=["HC-S-1"])
    assert set(only["kind"]) <= {"HC-S-1"} and len(only["kind"]) == int(et["dir_success"][:, 3].sum())


def test_layer_option_and_targeted_call(digits_cnn, digits20):
    x, y = digits20
    x, y = x[:6], y[:6]
    wrapped = nn.Sequential(digits_cnn, nn.Softmax(dim=1))  # a model that returns probabilities
    a = HotCold(digits_cnn, classes=2, pass_scores=False, select="l2")(x, y)
    b = HotCold(wrapped, classes=2, pass_scores=False, select="l2", layer="0")(x, y)
    assert torch.equal(a.extras["dir_hot"], b.extras["dir_hot"])
    assert torch.allclose(a.extras["dir_adv"], b.extras["dir_adv"], atol=1e-6)
    t = (y + 3) % 10
    r = HotCold(digits_cnn, pass_scores=False, select="l2", mode="both")(x, y, target=t)
    assert direction_names(r.options, 10, targeted=True) == ["HC-D-t", "HC-S-t"]
    assert torch.equal(r.extras["dir_hot"], t[:, None].expand(6, 2))
    ok = r.extras["dir_adversarial"]
    assert torch.equal(r.extras["dir_class"][ok], t[:, None].expand(6, 2)[ok])


def test_bad_input(digits_cnn, digits20, lin):
    x, y = digits20
    for opts, word in [({"classes": 0}, "classes"), ({"classes": (1, 1)}, "classes"), ({"scales": (0.9,)}, "scales"),
                       ({"tau": 1.5}, "tau"), ({"tau": -0.1}, "tau"), ({"mode": "grad"}, "mode"),
                       ({"extra": ("pgd",)}, "extra"), ({"pass_scores": False}, "pass_scores"),
                       ({"reach": "all"}, "reach"), ({"grow": 1.0}, "grow")]:
        with pytest.raises(ValueError, match=word):
            HotCold(digits_cnn, **opts)
    with pytest.raises(ValueError, match="k=10 needs k < K=10"):
        HotCold(digits_cnn, classes=10, pass_scores=False, select="l2")(x[:2], y[:2])
    with pytest.raises(ValueError, match="no module of that name"):
        HotCold(digits_cnn, layer="nope")(x[:2], y[:2])
    first = next(n for n, m in digits_cnn.named_modules() if isinstance(m, nn.Conv2d))
    with pytest.raises(ValueError, match="one per class"):
        HotCold(digits_cnn, layer=first, pass_scores=False, select="l2")(x[:2], y[:2])
    with pytest.raises(ValueError, match="at least 11 x 11"):
        HotCold(lin[0])(*lin[1:])  # 10 x 10 images
