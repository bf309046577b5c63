"""Carlini-Wagner L2 and box-constrained L-BFGS: minimal-norm attacks checked where the minimum
is known (a two-class linear model), the margin and search properties on the digits CNN, and
agreement with torchattacks' CW."""
import math

import pytest
import torch
from torch import nn

from pyadv.attacks import CWL0, CWL2, LBFGS, PGD, CWLinf
from pyadv.attacks.cw import RowAdam, freeze_counts, pixels_to_freeze, update_constant
from pyadv.attacks.lbfgs import next_constant


class TwoClassLinear(nn.Module):
    """logits [0, w.x + b] in float64: the closest adversarial of x is known in closed form."""

    def __init__(self, P=16):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = nn.Parameter(torch.randn(P, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], 1)


def linear_case(B, dist=0.5):
    """Images near 0.5 classified 0 whose closest class-1 point is at L2 distance ``dist``
    inside the box."""
    model = TwoClassLinear()
    g = torch.Generator().manual_seed(10 + B)
    x = (0.5 + 0.1 * (2 * torch.rand(B, 16, generator=g, dtype=torch.float64) - 1))
    w = model.w.detach()
    # shift each image along w so that its score is -dist * |w|: distance dist to the boundary
    s = x @ w
    x = x - ((s + dist * w.norm()) / w.norm() ** 2)[:, None] * w
    closest = x + dist * w / w.norm()
    assert (closest > 0).all() and (closest < 1).all() and (x > 0).all() and (x < 1).all()
    return model, x.view(B, 1, 4, 4), torch.zeros(B, dtype=torch.long)


@pytest.mark.parametrize("B", [1, 3, 8])
def test_cw_l2_and_lbfgs_find_the_known_minimum_on_a_linear_model(B):
    model, x, y = linear_case(B)
    cw = CWL2(model, steps=300, search_steps=10, c=0.1, lr=0.01)(x, y)
    assert cw.success.all()
    assert ((cw.l2 - 0.5).abs() <= 0.05 * 0.5).all(), cw.l2
    lb = LBFGS(model, c=0.1, search_steps=12)(x, y)
    assert lb.success.all()
    assert ((lb.l2 - 0.5).abs() <= 0.05 * 0.5).all(), lb.l2
    assert (lb.adv >= 0).all() and (lb.adv <= 1).all()


def test_lbfgs_larger_c_never_gives_a_larger_minimiser():
    model, x, y = linear_case(4)
    l2 = [LBFGS(model, c=c, search_steps=1)(x, y).extras["last_l2"] for c in (0.01, 0.1, 0.5, 1.0, 10.0)]
    for a, b in zip(l2, l2[1:]):
        assert (b <= a + 1e-6).all(), (a, b)
    assert (l2[0] > l2[-1]).all()  # and c does matter


def test_lbfgs_on_digits_stays_in_the_box_and_hits_targets(digits_cnn):
    from pyadv.data import digits

    x, y = digits("test", 28)
    x, y = x[:4], y[:4]
    t = (y + 3) % 10
    r = LBFGS(digits_cnn, search_steps=4, max_iter=30)(x, y, t)
    assert (r.adv >= 0).all() and (r.adv <= 1).all()
    assert r.success.float().mean() >= 0.75
    assert (r.pred[r.success] == t[r.success]).all()
    l2 = [LBFGS(digits_cnn, c=c, search_steps=1, max_iter=30)(x[:2], y[:2], t[:2]).extras["last_l2"]
          for c in (0.1, 1.0, 10.0)]
    for a, b in zip(l2, l2[1:]):
        assert (b <= a * 1.01 + 1e-4).all(), (a, b)


def test_lbfgs_direct_driver_matches_scipy_minimize(digits_cnn, monkeypatch):
    """The direct reverse-communication loop takes scipy.minimize's iterates: byte-equal results."""
    from pyadv.attacks import _lbfgsb
    from pyadv.data import digits

    if _lbfgsb.SETULB is None:
        pytest.skip("this scipy has no 1.15-style setulb: every call takes the minimize path")
    x, y = digits("test", 28)
    x, y = x[:3], y[:3]
    monkeypatch.setattr(LBFGS, "_solver", "scipy")
    direct = LBFGS(digits_cnn, search_steps=2, max_iter=15)(x, y)
    monkeypatch.setattr(LBFGS, "_direct", False)
    threaded = LBFGS(digits_cnn, search_steps=2, max_iter=15)(x, y)
    assert torch.equal(direct.adv, threaded.adv)
    assert torch.equal(direct.iterations, threaded.iterations)
    assert torch.equal(direct.queries, threaded.queries)
    assert torch.equal(direct.extras["last_l2"], threaded.extras["last_l2"])


@pytest.mark.parametrize("direct", [True, False])
def test_minimise_generator_finds_a_box_constrained_minimum(direct):
    """A separable quadratic whose minimiser lies partly outside [0, 1]: the clipped centre."""
    import numpy as np

    from pyadv.attacks._lbfgsb import drive, minimise

    centres = [np.array([0.3, 1.4, -0.2, 0.7]), np.array([2.0, 0.5, 0.5, -1.0])]

    def search(i):
        x, nit, at = yield from minimise(lambda v, a: a, np.full(4, 0.5), 50, direct)
        return x, nit

    def evaluate(rows, points):
        return [(float(((p - centres[r]) ** 2).sum()), 2 * (p - centres[r])) for r, p in zip(rows, points)]

    for (x, nit), c in zip(drive([search(0), search(1)], evaluate), centres):
        assert np.allclose(x, np.clip(c, 0, 1), atol=1e-6) and nit >= 1


@pytest.mark.parametrize("direct", [True, False])
def test_drive_raises_the_evaluation_error_and_closes_every_search(direct):
    import threading

    import numpy as np

    from pyadv.attacks._lbfgsb import drive, minimise

    def search(i):
        return (yield from minimise(lambda v, a: a, np.full(3, 0.5), 20, direct))

    def evaluate(rows, points):
        raise RuntimeError("model out of memory")

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="out of memory"):
        drive([search(0), search(1)], evaluate)
    assert threading.active_count() == before  # no minimize thread left waiting


@pytest.fixture(scope="module")
def digits_batch():
    from pyadv.data import digits

    x, y = digits("test", 28)
    return x[:8].contiguous(), y[:8]


@pytest.mark.parametrize("kappa", [0.0, 1.0])
def test_cw_l2_margin_on_every_success(digits_cnn, digits_batch, kappa):
    x, y = digits_batch
    r = CWL2(digits_cnn, kappa=kappa, c=0.1, steps=60, search_steps=3)(x, y)
    assert r.success.float().mean() >= 0.75
    with torch.no_grad():
        z = digits_cnn(r.adv)
    zy = z.gather(1, y[:, None])[:, 0]
    other = z.scatter(1, y[:, None], -math.inf).amax(1)
    margin = zy - other  # untargeted: Z_y - max_{i != y} Z_i
    assert (margin[r.success] <= -kappa + 0.1).all(), margin[r.success]
    # targeted: max_{i != t} Z_i - Z_t
    t = (y + 1) % 10
    r = CWL2(digits_cnn, kappa=kappa, c=0.1, steps=60, search_steps=3)(x, y, t)
    with torch.no_grad():
        z = digits_cnn(r.adv)
    m = z.scatter(1, t[:, None], -math.inf).amax(1) - z.gather(1, t[:, None])[:, 0]
    assert r.success.any() and (m[r.success] <= -kappa + 0.1).all()


def test_cw_l2_more_search_steps_never_raise_the_mean_l2(digits_cnn, digits_batch):
    x, y = digits_batch
    few = CWL2(digits_cnn, c=0.1, steps=40, search_steps=2)(x, y)
    more = CWL2(digits_cnn, c=0.1, steps=40, search_steps=5)(x, y)
    both = few.success & more.success
    assert both.sum() >= 4 and more.success.sum() >= few.success.sum()
    assert more.l2[both].mean() <= few.l2[both].mean() * (1 + 1e-4)


def test_cw_l2_is_closer_than_pgd_l2_at_equal_success(digits_cnn, digits_batch):
    x, y = digits_batch
    cw = CWL2(digits_cnn, c=0.1, steps=100, search_steps=5)(x, y)
    pgd = PGD(digits_cnn, norm="l2", eps=3.0, steps=40)(x, y)
    both = cw.success & pgd.success
    assert both.sum() >= 6
    assert cw.l2[both].mean() < pgd.l2[both].mean()


def test_cw_l2_agrees_with_torchattacks_cw(digits_cnn, digits_batch):
    """Same c, steps, lr, no binary search. What differs: torchattacks maps 0 and 1 pixels to
    w = +-inf, where tanh' = 0, so it never moves them (the paper pulls x in by 1e-6 and Adam moves
    them); it stops the whole batch once the summed cost rises at a checkpoint; its success test
    ignores kappa. So pyadv succeeds at least as often, at no larger L2 on average."""
    ta = pytest.importorskip("torchattacks")
    x, y = digits_batch
    ours = CWL2(digits_cnn, c=1.0, steps=50, search_steps=1, lr=0.01, abort_early=False)(x, y)
    theirs = ta.CW(digits_cnn, c=1.0, kappa=0, steps=50, lr=0.01)(x, y)
    with torch.no_grad():
        their_ok = digits_cnn(theirs).argmax(1) != y
    their_l2 = (theirs - x).flatten(1).norm(dim=1)
    assert ours.success.sum() >= their_ok.sum()
    both = ours.success & their_ok
    assert both.any()
    assert ours.l2[both].mean() <= their_l2[both].mean() * 1.05


def test_cw_l0_changes_fewer_pixels_than_cw_l2(digits_cnn, digits_batch):
    x, y = digits_batch
    x, y = x[:4], y[:4]
    l0 = CWL0(digits_cnn, c=0.1, steps=30)(x, y)
    l2 = CWL2(digits_cnn, c=0.1, steps=30, search_steps=3)(x, y)
    both = l0.success & l2.success
    assert both.sum() >= 3
    assert (l0.l0[both] < l2.l0[both]).all()
    assert (l0.extras["solves"][l0.success] >= 1).all()
    # frozen pixels kept their clean values: only the allowed ones changed
    assert (l0.l0[l0.success] <= l0.extras["allowed"][l0.success]).all()
    assert (l0.extras["allowed"][l0.success] < 28 * 28).any()  # and pixels were frozen


def test_cw_linf_is_below_pgd_at_equal_success(digits_cnn, digits_batch):
    x, y = digits_batch
    x, y = x[:4], y[:4]
    cw = CWLinf(digits_cnn, c=1e-2, steps=50)(x, y)
    pgd = PGD(digits_cnn, eps=0.3, steps=20)(x, y)
    both = cw.success & pgd.success
    assert both.sum() >= 3
    assert (cw.linf[both] < pgd.linf[both]).all()
    assert (cw.extras["tau"] <= 1.0).all()


def test_freeze_count():
    # the first always; on while changes stay <= 0.01 (the first above is frozen too); cap 0.3 sqrt
    inf = math.inf

    def count(change, eq):
        row = torch.tensor(change + [inf] * (50 - len(change)))[None]
        return int(freeze_counts(row, torch.tensor([len(change)]), torch.tensor([eq]))[0])

    assert count([0.5, 0.6], 100) == 1
    assert count([0.0, 0.001, 0.02, 0.03], 100) == 3
    assert count([0.0] * 50, 100) == 3  # ceil(0.3 * 10)
    assert count([0.0] * 2, 10000) == 2
    assert count([], 100) == 1  # nothing allowed: the caller's mask keeps it that way


def test_pixels_to_freeze_matches_a_loop_over_images():
    """The batched freeze against the rule applied one image at a time (sort the allowed pixels'
    changes, freeze the count :func:`freeze_counts` gives), ties broken by pixel order."""
    g = torch.Generator().manual_seed(0)
    n, P = 40, 30
    change = (torch.rand(n, P, generator=g) * 0.02).round(decimals=3)  # ties and both sides of 0.01
    change[::5] = 0.0
    allowed = torch.rand(n, P, generator=g) < 0.7
    allowed[3] = False
    eq = torch.randint(0, 400, (n,), generator=g)
    got = pixels_to_freeze(change, allowed, eq)
    assert not (got & ~allowed).any()
    for i in range(n):
        free = allowed[i].nonzero().flatten()
        srt, order = change[i, free].sort(stable=True)
        k = int(freeze_counts(torch.cat([srt, torch.full((P - len(free),), math.inf)])[None],
                              torch.tensor([len(free)]), eq[i:i + 1])[0])
        want = torch.zeros(P, dtype=torch.bool)
        want[free[order[:k]]] = True
        assert torch.equal(got[i], want), i


def test_search_helpers():
    c, lo, hi = update_constant(torch.tensor([1.0, 1.0]), torch.zeros(2), torch.full((2,), 1e10),
                                torch.tensor([True, False]))
    assert c.tolist() == [0.5, 10.0] and lo.tolist() == [0.0, 1.0] and hi.tolist() == [1.0, 1e10]
    assert next_constant(1.0, True, None, None) == (10.0, 1.0, None)
    assert next_constant(10.0, False, 1.0, None) == (math.sqrt(10.0), 1.0, 10.0)
    # per-row Adam: a row reset starts again with its bias correction at t = 1
    p = torch.zeros(2, 3)
    adam = RowAdam(p, lr=0.1)
    rows = torch.arange(2)
    p = adam.step(rows, p, torch.ones(2, 3))
    assert torch.allclose(p, torch.full((2, 3), -0.1), atol=1e-6)
    adam.reset(torch.tensor([1]))
    assert adam.t.tolist() == [1, 0]


@pytest.mark.parametrize("cls,bad", [(CWL2, {"kappa": -1}), (CWL2, {"c": 0}), (CWL2, {"search_steps": 0}),
                                     (CWL2, {"lr": -0.1}), (LBFGS, {"c": -1.0}), (LBFGS, {"search_steps": 0}),
                                     (LBFGS, {"max_iter": 0}), (CWLinf, {"kappa": -0.5}), (CWLinf, {"c": 0.0}),
                                     (CWLinf, {"max_c": 1e-9}), (CWLinf, {"tau_factor": 1.0}), (CWL0, {"kappa": -1}),
                                     (CWL0, {"steps": 0}), (CWL0, {"max_c": 1e-6})])
def test_bad_options(cls, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"option {name}="):
        cls(nn.Linear(4, 2), **bad)
