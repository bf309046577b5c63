"""JSMA (Papernot et al. 2016): the budget and step rules, targets, the exact pair search
against brute force, torchattacks' JSMA, and the hardness and adversarial-distance measures."""
import math

import pytest
import torch
from torch import nn

from pyadv.attacks import JSMA
from pyadv.attacks.jsma import _pair_scores, best_pairs, saliency_map
from pyadv.evaluate import adversarial_distance, hardness_figure, hardness_matrix, robustness


@pytest.fixture(scope="module")
def batch():
    from pyadv.data import digits

    x, y = digits("test", 28)
    return x[:8].contiguous(), y[:8]


@pytest.mark.parametrize("theta,upsilon", [(1.0, 0.145), (0.5, 0.1), (-1.0, 0.1), (-0.5, 0.1)])
def test_budget_and_steps(digits_cnn, batch, theta, upsilon):
    x, y = batch
    t = (y + 1) % 10
    r = JSMA(digits_cnn, theta=theta, upsilon=upsilon)(x, y, t)
    P = x[0].numel()
    assert (r.l0 <= upsilon * P).all()
    d = (r.adv - x).flatten(1)
    changed = d != 0
    # each changed feature moved by a whole number of theta steps, or to its bound
    k = d / theta
    whole = (k - k.round()).abs() < 1e-4
    at_bound = r.adv.flatten(1) == (1.0 if theta > 0 else 0.0)
    assert (whole | at_bound)[changed].all()
    assert ((k > 0) | ~changed).all()  # the direction of theta
    assert (r.pred[r.success] == t[r.success]).all()
    assert r.success.any()
    # one forward and two backward passes per step, and the final check's forward
    assert torch.equal(r.gradients, 2 * (r.queries - 1))


def test_untargeted_draws_a_target_per_image_and_succeeds_on_misclassification(digits_cnn, batch):
    x, y = batch
    a = JSMA(digits_cnn, seed=1)(x, y)
    b = JSMA(digits_cnn, seed=1)(x, y)
    assert torch.equal(a.adv, b.adv) and torch.equal(a.extras["aim"], b.extras["aim"])
    assert (a.extras["aim"] != y).all()
    assert torch.equal(a.success, a.pred != y)


def test_pair_search_is_exact():
    g = torch.Generator().manual_seed(0)
    for trial in range(100):
        n, P = 4, int(torch.randint(2, 80, (1,), generator=g))
        a, b = torch.randn(n, P, generator=g), torch.randn(n, P, generator=g)
        if trial % 3 == 0:  # ties
            a, b = a.round(), b.round()
        d = torch.rand(n, P, generator=g) > 0.3
        for increase in (True, False):
            p, q, found = best_pairs(a, b, d, increase)
            _, _, ref = _pair_scores(a.clone(), b.clone(), d, increase)
            assert torch.equal(found, ref > 0)
            A = a.gather(1, p[:, None])[:, 0] + a.gather(1, q[:, None])[:, 0]
            B = b.gather(1, p[:, None])[:, 0] + b.gather(1, q[:, None])[:, 0]
            assert torch.allclose((-A * B)[found], ref[found])
            assert (A[found] > 0).eq(increase).all() and (B[found] < 0).eq(increase).all()
            assert (p != q)[found].all() and d.gather(1, p[:, None])[found].all() and d.gather(1, q[:, None])[found].all()


def test_agrees_with_torchattacks_jsma(digits_cnn, batch):
    """torchattacks' JSMA (theta 1, gamma 0.1) aims an untargeted call at (y + 1) % 10, as the
    targeted call here. It allows ceil(gamma P / 2) pair steps (pyadv floor(upsilon P / 2), so
    that at most upsilon P features change): at the upsilon that allows as many steps, and with
    the default min_room (torchattacks' domain keeps pixels above 0.99 out), the same images
    succeed with the same features changed."""
    ta = pytest.importorskip("torchattacks")
    x, y = batch
    t = (y + 1) % 10
    P = x[0].numel()
    pairs = math.ceil(0.1 * P / 2)
    ours = JSMA(digits_cnn, theta=1.0, upsilon=2 * pairs / P)(x, y, t)
    theirs = ta.JSMA(digits_cnn, theta=1.0, gamma=0.1)(x, y)
    with torch.no_grad():
        their_ok = digits_cnn(theirs).argmax(1) == t
    assert torch.equal(ours.success, their_ok) and their_ok.any()
    assert torch.equal((ours.adv != x)[their_ok], (theirs != x)[their_ok])


def test_min_room_keeps_nearly_saturated_features_out(digits_cnn):
    """A feature within min_room |theta| of its bound counts as saturated: with every pixel at
    0.995 there is nothing to increase at the default 0.01, while min_room 0 spends steps on
    changes of 0.005."""
    x = torch.full((2, 1, 28, 28), 0.995)
    y = digits_cnn(x).argmax(1)
    t = (y + 1) % 10
    assert (JSMA(digits_cnn, theta=1.0, upsilon=0.02)(x, y, t).l0 == 0).all()
    assert (JSMA(digits_cnn, theta=1.0, upsilon=0.02, min_room=0)(x, y, t).l0 > 0).any()
    # decreasing: the room is the distance to 0
    x0 = torch.full((2, 1, 28, 28), 0.005)
    assert (JSMA(digits_cnn, theta=-1.0, upsilon=0.02)(x0, y, t).l0 == 0).all()


def test_adversarial_distance_and_robustness(digits_cnn, batch):
    x, y = batch
    A = adversarial_distance(digits_cnn, x, (y + 1) % 10)
    assert A.shape == (8,) and ((A >= 0) & (A <= 1)).all()
    # by hand for one image: the fraction of features with zero saliency
    xi = x[:1].clone().requires_grad_(True)
    z = digits_cnn(xi)
    t = int((y[0] + 1) % 10)
    (ga,) = torch.autograd.grad(z[0, t], xi, retain_graph=True)
    (gb,) = torch.autograd.grad(z[0].sum() - z[0, t], xi)
    s = saliency_map(ga.flatten(1), gb.flatten(1))
    assert math.isclose(float(A[0]), float(1 - (s > 0).float().mean()), abs_tol=1e-6)
    rob = robustness(digits_cnn, x[:3])
    assert rob["A"].shape == (3, 10) and rob["R"] == float(rob["A"].nan_to_num(math.inf).min())


def test_hardness_matrix_and_figure(digits_cnn, batch, tmp_path):
    x, y = batch
    out = hardness_matrix(digits_cnn, x[:5], y[:5], upsilons=(0.02, 0.05, 0.1), num_classes=10)
    H = out["H"]
    assert H.shape == (10, 10)
    assert (H.diagonal() == 0).all()
    present = out["counts"] > 0
    assert torch.isfinite(H[present]).all() and (H[present] >= 0).all()
    assert (~present).any()  # 5 images cannot cover 10 classes
    off = ~torch.eye(10, dtype=torch.bool)
    assert torch.isnan(H[~present][off[~present]]).all()  # no image of that class: unknown
    # success rates never fall as the budget grows
    assert (out["tau"][..., 1:] >= out["tau"][..., :-1]).all()
    png = hardness_figure(H.nan_to_num(0), tmp_path / "hardness.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad", [{"theta": 0}, {"theta": 1.5}, {"theta": -2}, {"upsilon": 0}, {"upsilon": 1.2},
                                 {"min_room": -0.1}, {"min_room": 1.0}, {"min_room": True}])
def test_bad_options(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"option {name}="):
        JSMA(nn.Linear(4, 2), **bad)


def test_target_equal_to_label_is_refused(digits_cnn, batch):
    x, y = batch
    with pytest.raises(ValueError, match="target"):
        JSMA(digits_cnn)(x, y, y)
