"""The one-pixel attack (paper 003, Su et al.) against exhaustive search on the 8x8 digits,
its pixel budget, targets, grey levels, batch independence and bad input."""
import pytest
import torch

from pyadv.attacks import OnePixel


@pytest.fixture(scope="module")
def d8():
    from pyadv.data import digits

    x, y = digits("test", 8)
    return x[:100], y[:100]


def exhaustive(model, x, y, levels=17):
    """Every position x every value in {0, 1/16, ..., 1}: which images one pixel can fool."""
    vals = torch.linspace(0, 1, levels)
    hit = torch.zeros(len(x), dtype=torch.bool)
    with torch.no_grad():
        for p in range(x[0].numel()):
            xx = x[:, None].repeat(1, levels, 1, 1, 1)
            xx.view(len(x), levels, -1)[:, :, p] = vals
            hit |= (model(xx.flatten(0, 1)).argmax(1).view(len(x), -1) != y[:, None]).any(1)
    return hit


def pixels_changed(r):
    return (r.adv != r.x).any(1).flatten(1).sum(1)


def test_reaches_the_exhaustive_ceiling(digits8_cnn, d8):
    x, y = d8
    with torch.no_grad():
        ok = digits8_cnn(x).argmax(1) == y
    ceiling = exhaustive(digits8_cnn, x, y) & ok
    assert ceiling.sum() >= 10  # the test needs a ceiling to reach
    sel = ceiling.nonzero().flatten()
    r = OnePixel(digits8_cnn, stop="first_success")(x[sel], y[sel], index=sel)
    assert r.success.sum() >= 0.95 * len(sel)
    with torch.no_grad():  # every success confirmed by a forward pass of the returned image
        pred = digits8_cnn(r.adv).argmax(1)
    assert torch.equal(pred[r.success], r.pred[r.success]) and (pred[r.success] != y[sel][r.success]).all()
    assert (pixels_changed(r) <= 1).all()
    assert (r.extras["pixels"][r.success, 0] >= 0).all() and (r.extras["pixels"][..., :] <= 7).all()


def test_pixel_budget_targets_and_grey_levels(digits8_cnn, d8):
    x, y = d8
    x, y = x[:12], y[:12]
    r = OnePixel(digits8_cnn, pixels=3, pop_size=60, iters=15, quantize=True)(x, y)
    assert (pixels_changed(r) <= 3).all()
    k = r.adv * 255
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert r.extras["pixels"].shape == (12, 3, 2) and r.extras["values"].shape == (12, 3, 1)
    t = (y + 1) % 10
    rt = OnePixel(digits8_cnn, pixels=3, pop_size=60, iters=15)(x, y, target=t)
    assert torch.equal(rt.pred[rt.success], t[rt.success])
    # paper's stop: an untargeted image stops once P(y) < 5 %; with stop="none" it runs every generation
    r_none = OnePixel(digits8_cnn, pop_size=20, iters=5, stop="none")(x, y)
    assert (r_none.iterations == 5).all()


def test_batch_independence(digits8_cnn, d8):
    """An image's result depends on its index, not on the batch it shares."""
    x, y = d8
    idx = torch.arange(6)
    whole = OnePixel(digits8_cnn, pop_size=30, iters=8, seed=4)(x[:6], y[:6], index=idx)
    part = OnePixel(digits8_cnn, pop_size=30, iters=8, seed=4)(x[2:4], y[2:4], index=idx[2:4])
    assert torch.equal(whole.adv[2:4], part.adv)


def test_bad_input(digits8_cnn, d8):
    x, y = d8
    for opts, word in [({"pixels": 0}, "pixels=0"), ({"pop_size": 3}, "pop_size=3"), ({"F": 0.0}, "F=0.0"),
                       ({"true_prob": 0.0}, "true_prob"), ({"target_prob": 1.0}, "target_prob"),
                       ({"stop": "never"}, "stop")]:
        with pytest.raises(ValueError, match=word):
            OnePixel(digits8_cnn, **opts)
    with pytest.raises(ValueError, match="at most the image's 8 x 8 = 64 pixels"):
        OnePixel(digits8_cnn, pixels=65)(x[:2], y[:2])
    with pytest.raises(ValueError, match="target equals the label"):
        OnePixel(digits8_cnn)(x[:2], y[:2], target=y[:2])
