"""FIPSO (Shi et al. 2020, Algorithm 1), Algorithm 2 and the universal table on the digits CNN.

Calibrated before pyadv existed (100 images, N_p = 200, T = 100): untargeted m = 20 with
gradient pixels 55 %, with FI pixels 30 %. These tests use 16 images, N_p = 100, T = 60 and
stop at the first success, to stay small; the thresholds are a little under what that
setting gives here (gradient 6/16, FI 3/16).
"""
import pytest
import torch

from pyadv.attacks import FIPSO, fi_pso_dataset
from pyadv.data import digits
from pyadv.evaluate import universal_table
from pyadv.fi import image_fi, pixel_fi


@pytest.fixture(scope="module")
def data(digits_cnn):
    x, y = digits("test", 28)
    with torch.no_grad():
        ok = digits_cnn(x).argmax(1) == y
    return x[ok][:16], y[ok][:16]


@pytest.mark.slow
@pytest.mark.parametrize("pixels, at_least", [("gradient", 4), ("fi", 2)])
def test_m20_success_where_the_optimiser_shows(digits_cnn, data, pixels, at_least):
    x, y = data
    r = FIPSO(digits_cnn, m=20, pixels=pixels, n_particles=100, iters=60, stop="first_success")(x, y)
    assert int(r.success.sum()) >= at_least  # measured: gradient 6/16, FI 3/16
    assert (r.l0 <= 20).all()
    assert bool((r.pred[r.success] != y[r.success]).all())
    # Each image's queries: its swarm's evaluations, K - 1 (FI) or 1 (gradient) passes, the check.
    assert (r.queries <= 100 * 61 + 10).all()


@pytest.mark.slow
def test_run_to_convergence_shrinks_the_perturbation(digits_cnn, data):
    """With m = all and eps = 1 the first random swarm already succeeds (its L2 is about the
    clean image's own norm); running on, f_A = a f0 + b ||omega|| drives ||omega|| down."""
    x, y = data[0][:4], data[1][:4]
    kw = dict(n_particles=100, iters=60, seed=1)
    first = FIPSO(digits_cnn, stop="first_success", **kw)(x, y)
    conv = FIPSO(digits_cnn, **kw)(x, y)
    grad = FIPSO(digits_cnn, init="gradient", **kw)(x, y)
    assert bool(first.success.all()) and bool(conv.success.all()) and bool(grad.success.all())
    assert (first.iterations == 0).all()  # measured: the initial swarm succeeds
    assert (conv.l2 < 0.95 * first.l2).all()  # measured: 10.4-10.9 against 12.2-12.6
    assert (grad.l2 < 0.6 * first.l2).all()  # measured: 1.1-5.4


def test_p_err_success_is_within_tolerance(digits_cnn, data):
    x, y = data[0][:6], data[1][:6]
    for p_err in (0.5, 0.99):
        r = FIPSO(digits_cnn, p_err=p_err, n_particles=40, iters=20, stop="first_success")(x, y)
        assert int(r.success.sum()) >= 4  # measured: 6/6 at both levels
        p1 = r.probs.max(1).values
        assert ((p1[r.success] - p_err).abs() <= 0.05).all()
        assert (r.pred[r.success] != y[r.success]).all()


def test_targeted_success_has_pred_target(digits_cnn, data):
    x, y = data[0][:6], data[1][:6]
    t = (y + 1) % 10
    r = FIPSO(digits_cnn, n_particles=40, iters=30, stop="first_success")(x, y, target=t)
    assert int(r.success.sum()) >= 2  # measured: 4/8 with 100 particles
    assert torch.equal(r.success, r.pred == t)
    assert torch.allclose(r.prob_target, r.probs.gather(1, t[:, None])[:, 0])
    rp = FIPSO(digits_cnn, p_err=0.75, n_particles=40, iters=30, stop="first_success")(x, y, target=t)
    ok = rp.success
    assert ((rp.prob_target[ok] - 0.75).abs() <= 0.05).all() and torch.equal(rp.pred[ok], t[ok])


def test_same_seed_same_result_for_one_and_two_threads(digits_cnn, data):
    x, y = data[0][:3], data[1][:3]
    atk = FIPSO(digits_cnn, m=10, pixels="gradient", n_particles=16, iters=8, seed=4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        r1 = atk(x, y)
        torch.set_num_threads(2)
        r2 = atk(x, y)
    finally:
        torch.set_num_threads(before)
    assert r1.equal(r2)


def test_fi_pixel_one_selects_nothing_on_confident_images(digits_cnn, data):
    """Exact FI is at most (1 - P_y)/P_y < 1 when P_y > 0.5: FI_pixel = 1 selects no pixel,
    and such an image is a per-image failure, not an error."""
    x, y = data[0][:4], data[1][:4]
    with torch.no_grad():
        assert (digits_cnn(x).softmax(1).max(1).values > 0.5).all()
    r = FIPSO(digits_cnn, fi_pixel=1.0, n_particles=8, iters=3)(x, y)
    assert r.extras["m"].tolist() == [0] * 4
    assert not r.success.any() and torch.equal(r.adv, x) and (r.iterations == 0).all()
    bound = image_fi(digits_cnn, x, y)
    maps = pixel_fi(digits_cnn, x, y)
    assert (maps.flatten(1).amax(1) <= bound * (1 + 1e-4)).all()


def test_fi_pixel_threshold_sets_m_per_image(digits_cnn, data):
    x, y = data[0][:3], data[1][:3]
    r = FIPSO(digits_cnn, fi_pixel=0.01, n_particles=8, iters=2)(x, y)
    maps = pixel_fi(digits_cnn, x, y).flatten(1)
    assert r.extras["m"].tolist() == (maps >= 0.01).sum(1).tolist()
    assert (r.l0 <= r.extras["m"]).all()


def test_result_metrics_on_request(digits_cnn, data):
    x, y = data[0][:3], data[1][:3]
    r = FIPSO(digits_cnn, m=20, pixels="gradient", n_particles=10, iters=3)(x, y)
    s = r.ssim()
    assert s.shape == (3,) and (s <= 1).all() and (s > 0.5).all()
    assert r.ssim() is s  # computed once
    ps = r.pass_score()
    assert ps.shape == (3,) and (ps <= 1 + 1e-6).all()


@pytest.mark.slow
def test_algorithm2_selects_and_attacks_vulnerable_images(digits_cnn):
    x, y = digits("test", 28)
    x, y = x[:150], y[:150]
    r = fi_pso_dataset(digits_cnn, x, y, fi_img=0.05, p_target=0.05, fi_pixel=0.1, n_particles=30, iters=20,
                       stop="first_success")
    with torch.no_grad():
        p = digits_cnn(x).softmax(1)
    second = p.topk(2, 1).indices[:, 1]
    fi = (1 - p.gather(1, y[:, None])[:, 0]) / p.gather(1, y[:, None])[:, 0]
    expect = ((p.argmax(1) == y) & (fi >= 0.05) & (p.gather(1, second[:, None])[:, 0] >= 0.05)).nonzero().flatten()
    assert torch.equal(r.extras["index"], expect) and len(expect) > 0
    assert torch.equal(r.target, second[expect])
    assert torch.allclose(r.extras["fi_img"], fi[expect], rtol=1e-4)
    maps = pixel_fi(digits_cnn, x[expect], y[expect], target=second[expect]).flatten(1)
    assert r.extras["m"].tolist() == (maps >= 0.1).sum(1).tolist()
    assert torch.equal(r.success, r.pred == r.target)
    assert r.options["algorithm2"]["fi_img"] == 0.05


def test_universal_table_counts(digits_cnn):
    x, y = digits("test", 28)
    zero = universal_table(digits_cnn, torch.zeros(1, 28, 28), x, y, target_class=4)
    assert zero["total"]["misclassified_pct"] == 0 and zero["total"]["to_target_pct"] == 0
    white = torch.ones(1, 28, 28)
    with torch.no_grad():
        c = int(digits_cnn(white[None]).argmax(1))
    t = universal_table(digits_cnn, white, x, y, target_class=c)
    with torch.no_grad():
        correct = digits_cnn(x).argmax(1) == y
    assert t["total"]["correct"] == int((correct & (y != c)).sum())
    assert t["total"]["misclassified_pct"] == 100 and t["total"]["to_target_pct"] == 100
    assert t["rows"][c]["misclassified_pct"] == 0
    assert f"| total | {t['total']['correct']} | 100.0 | 100.0 |" in t["markdown"]
    with pytest.raises(ValueError, match="target_class"):
        universal_table(digits_cnn, white, x, y, target_class=10)
    with pytest.raises(ValueError, match="perturbation must be"):
        universal_table(digits_cnn, torch.ones(3, 28, 28), x, y, target_class=1)
