"""Sparse-RS (Croce et al. 2022), L0: its budget, schedule, monotone strength, targets, batch
independence and bad input."""
import pytest
import torch

from pyadv.attacks import SparseRS
from pyadv.attacks.sparse_rs import alpha_schedule, hashed_uniform


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
