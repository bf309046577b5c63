"""Sparse-RS (Croce et al. 2022), L0: its budget, schedule, monotone strength, targets, batch
independence and bad input."""
import pytest
import torch

from pyadv.attacks import SparseRS
from pyadv.attacks.sparse_rs import _draws, alpha_schedule, fresh_pixels, hashed_uniform


@pytest.fixture(scope="module")
def d28():
    from pyadv.data import digits

    x, y = digits("test", 28)
    return x[:24], y[:24]


def pixels_changed(r):
    return (r.adv != r.x).any(1).flatten(1).sum(1)


def test_schedule_as_published():
    # alpha_init / 2, / 4, / 5, / 6, / 8, / 10, / 12, / 15, / 20 at 50, 200, ... of 10000 (rescaled)
    a = 0.8
    assert [alpha_schedule(a, it, 10000) for it in (0, 1, 50, 51, 200, 201, 500, 501, 1000, 2000, 4000, 6000,
                                                    8000, 8001)] == \
        [a, a / 2, a / 2, a / 4, a / 4, a / 5, a / 5, a / 6, a / 6, a / 8, a / 10, a / 12, a / 15, a / 20]
    assert alpha_schedule(a, 100, 1000) == a / 6  # 100 of 1000 is 1000 of 10000


def test_hash_is_uniform_and_keyed():
    u = hashed_uniform(3, torch.arange(50), 7, 1000)
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01
    assert torch.equal(hashed_uniform(3, torch.tensor([4, 9]), 7, 10), u[[4, 9], :10])
    assert not torch.equal(hashed_uniform(4, torch.arange(50), 7, 1000), u)


@pytest.mark.parametrize("P,k,m", [(784, 10, 3), (784, 50, 15), (64, 30, 9)])
def test_fresh_pixels_are_distinct_new_and_uniform(P, k, m):
    n = 4000
    R = _draws(P, k, m)
    pix = hashed_uniform(1, torch.arange(n), 0, P).argsort(1)[:, :k]
    new = fresh_pixels(hashed_uniform(2, torch.arange(n), 5, R), pix, m, P,
                       lambda rows: hashed_uniform(3, torch.arange(n)[rows], 5, P))
    assert new.shape == (n, m) and ((new >= 0) & (new < P)).all()
    assert (new[:, :, None] != pix[:, None, :]).all()                       # never in the set
    assert (new.sort(1).values.diff(1) != 0).all()                          # distinct
    # each pixel outside the set equally likely: counts over 4000 rows within a loose band
    outside = torch.ones(n, P).scatter_(1, pix, 0).sum(0)
    rate = torch.bincount(new.flatten(), minlength=P) / outside
    assert abs(float(rate.mean()) - m / (P - k)) < 0.1 * m / (P - k)
    assert float(rate.max()) < 2.5 * m / (P - k)


def test_fresh_pixels_short_rows_fall_back():
    """Draws that repeat (here all at pixel 0, in the set) leave a row short: it takes its own
    stream of a uniform per pixel."""
    P, k, m, n = 784, 10, 3, 6
    pix = torch.arange(k).repeat(n, 1)
    u = torch.zeros(n, _draws(P, k, m))
    u[3] = hashed_uniform(0, torch.tensor([3]), 1, u.shape[1])  # one row draws normally
    new = fresh_pixels(u, pix, m, P, lambda rows: hashed_uniform(9, torch.arange(n)[rows], 1, P))
    assert (new >= k).all() and (new.sort(1).values.diff(1) != 0).all()


def test_budget_and_strength(digits_cnn, d28):
    x, y = d28
    succ = {}
    for k in (5, 10, 20):
        r = SparseRS(digits_cnn, k=k, n_queries=300)(x, y)
        assert (pixels_changed(r) <= k).all()
        assert (r.queries <= 300 + 1).all()  # the budget, plus the final check
        succ[k] = int(r.success.sum())
    assert succ[5] <= succ[10] <= succ[20] and succ[20] > succ[5]
    more = SparseRS(digits_cnn, k=10, n_queries=1000)(x, y)
    assert int(more.success.sum()) >= succ[10]
    every = SparseRS(digits_cnn, k=28 * 28, n_queries=50)(x[:6], y[:6])  # every pixel may move
    assert every.success.all()


def test_targeted_and_batch_independence(digits_cnn, d28):
    x, y = d28
    t = (y + 1) % 10
    r = SparseRS(digits_cnn, k=30, n_queries=200)(x[:8], y[:8], target=t[:8])
    assert r.success.any() and torch.equal(r.pred[r.success], t[:8][r.success])
    idx = torch.arange(8)
    whole = SparseRS(digits_cnn, k=8, n_queries=60, seed=2)(x[:8], y[:8], index=idx)
    part = SparseRS(digits_cnn, k=8, n_queries=60, seed=2)(x[3:6], y[3:6], index=idx[3:6])
    assert torch.equal(whole.adv[3:6], part.adv)


def test_bad_input(digits_cnn, d28):
    x, y = d28
    for opts, word in [({"k": 0}, "k=0"), ({"n_queries": 0}, "n_queries=0"), ({"alpha_init": 0.0}, "alpha_init"),
                       ({"alpha_init": 1.5}, "alpha_init")]:
        with pytest.raises(ValueError, match=word):
            SparseRS(digits_cnn, **opts)
    with pytest.raises(ValueError, match="at most the image's 28 x 28 = 784 pixels"):
        SparseRS(digits_cnn, k=785)(x[:2], y[:2])
