"""ECC alignment and PASS against OpenCV and scikit-image, and against the true homography, on
real photos warped by known small homographies plus +-8/255 sign noise."""
import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import structural_similarity
from skimage.transform import resize

import cv2  # a declared test dependency (pyproject.toml [test])

from pyadv import _C
from pyadv.data.pairs import noise_pairs, warped_pairs
from pyadv.metrics import ecc_align, pass_score, ssim, warp_perspective
from pyadv.reference import ecc_moments_reference

def pairs(size, per_photo, seed, border="replicate"):
    """(template, image, true warp template -> image) as numpy: image(M x) = template(x) + noise."""
    P = warped_pairs(size, per_photo, seed, border=border)
    return [(P.template[k, 0].numpy(), P.image[k, 0].numpy(), P.warp[k].numpy()) for k in range(len(P.warp))]


def corner_error(W, M, size):
    c = size - 1
    pts = np.array([[0, 0, 1], [c, 0, 1], [0, c, 1], [c, c, 1]], dtype=np.float64).T
    p, q = W @ pts, M @ pts
    return float(np.abs(p[:2] / p[2] - q[:2] / q[2]).max())


def opencv_ecc(tmpl, img, iters, eps, with_rho=False):
    try:
        rho, W = cv2.findTransformECC(tmpl, img, np.eye(3, dtype=np.float32), cv2.MOTION_HOMOGRAPHY,
                                    (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iters, eps), None, 5)
        return (W.astype(np.float64), rho) if with_rho else W.astype(np.float64)
    except cv2.error:
        return (None, None) if with_rho else None


def run(size, per_photo, seed, iters=100, eps=1e-3, border="replicate"):
    ps = pairs(size, per_photo, seed, border)
    t = torch.from_numpy(np.stack([p[0] for p in ps]))[:, None]
    i = torch.from_numpy(np.stack([p[1] for p in ps]))[:, None]
    r = ecc_align(t, i, iters=iters, eps=eps)
    ours = [corner_error(r.warp[k].numpy(), p[2], size) for k, p in enumerate(ps)]
    cv = [opencv_ecc(p[0], p[1], iters, eps) for p in ps]
    return ps, r, np.array(ours), cv


def test_agrees_with_opencv_at_224():
    """Corners within 0.05 px of OpenCV's on every pair (measured: median 0.010 px, max 0.028 px;
    OpenCV works in float32 and pyadv in float64)."""
    ps, r, ours, cv = run(224, 2, seed=0, eps=1e-6)
    c = 223
    pts = np.array([[0, 0, 1], [c, 0, 1], [0, c, 1], [c, c, 1]], dtype=np.float64).T
    agree = []
    for k, W in enumerate(cv):
        assert W is not None
        a, b = r.warp[k].numpy() @ pts, W @ pts
        agree.append(np.abs(a[:2] / a[2] - b[:2] / b[2]).max())
    print(f"224 px: pyadv vs OpenCV corners median {np.median(agree):.4f} px, max {max(agree):.4f} px")
    assert max(agree) <= 0.05
    # The correlation both return is the one measured at the last warp before its update.
    # OpenCV's warp samples at fixed-point positions (1/32 px) in float32, which costs it a
    # little correlation; pyadv samples at the exact position.
    cv_rho = np.array([opencv_ecc(p[0], p[1], 100, 1e-6, with_rho=True)[1] for p in ps])
    assert np.all(np.abs(r.rho.numpy() - cv_rho) <= 5e-3) and np.all(r.rho.numpy() >= cv_rho - 1e-4)
    cv_err = [corner_error(W, p[2], 224) for W, p in zip(cv, ps)]
    assert np.median(ours) <= np.median(cv_err) + 0.01 and r.converged.all()


@pytest.mark.slow
@pytest.mark.parametrize("border", ["replicate", "constant"])
@pytest.mark.parametrize("size", [28, 32])
def test_small_images_no_worse_than_opencv_and_never_far_off(size, border):
    """With a constant (black) border brought in by the warp, OpenCV raises or returns a warp more
    than 2 px off on several percent of pairs, up to hundreds of px; pyadv's margin keeps the
    smeared border out of the fit."""
    ps, r, ours, cv = run(size, 34, seed=size, border=border)
    cv_err = np.array([corner_error(W, p[2], size) if W is not None else np.inf for W, p in zip(cv, ps)])
    print(f"{size} px, {border} border: pyadv median {np.median(ours):.3f} px, > 2 px on {np.mean(ours > 2):.1%}; "
          f"OpenCV median {np.median(cv_err):.3f} px, raised on {np.mean(np.isinf(cv_err)):.1%}, "
          f"> 2 px on {np.mean(np.isfinite(cv_err) & (cv_err > 2)):.1%}")
    assert np.median(ours) <= np.median(cv_err)
    assert np.mean(ours > 2) <= 0.01
    assert not r.failed.any()
    if border == "constant":  # the hard regime: OpenCV does go wrong here
        assert np.mean(cv_err > 2) >= 0.03


def random_moment_inputs(B, H, W, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(B, 3, H, W, generator=g, dtype=torch.float64).to(dtype)
    tmpl = torch.rand(B, H, W, generator=g, dtype=torch.float64).to(dtype)
    M = torch.eye(3, dtype=torch.float64).repeat(B, 1, 1)
    M[:, :2, :2] += 0.02 * torch.randn(B, 2, 2, generator=g, dtype=torch.float64)
    M[:, :2, 2] += 2 * torch.randn(B, 2, generator=g, dtype=torch.float64)
    M[:, 2, :2] += 1e-3 * torch.randn(B, 2, generator=g, dtype=torch.float64)
    return img, tmpl, M


@pytest.mark.parametrize("motion", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape,margin", [((3, 20, 23), 0), ((2, 17, 16), 3), ((1, 1, 1), 0), ((2, 1, 9), 0),
                                          ((2, 9, 1), 0), ((0, 8, 8), 0)])
def test_ecc_moments_op_matches_reference_and_emulator(motion, dtype, shape, margin, isa):
    img, tmpl, M = random_moment_inputs(*shape, dtype, seed=motion)
    cpu = torch.ops.pyadv.ecc_moments(img, tmpl, M, motion, margin)
    ref = ecc_moments_reference(img, tmpl, M, motion, margin)
    emu = _C.emulated.ecc_moments(img, tmpl, M, motion, margin)
    assert cpu.dtype == torch.float64 and cpu.shape == ref.shape
    # float32: a sample of a float32 plane is blended in double and rounded to float32; the CPU
    # op's samples are the reference's exactly (the test below), but the emulator's scalar code
    # may keep the double (GCC 12): one float32 ulp on that sample. float64 agrees to summation
    # order; the sums themselves run in another order than the reference's.
    tol = dict(rtol=1e-11, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(cpu, ref, **tol)
    torch.testing.assert_close(emu, cpu, **tol)
    if shape[0] > 1:  # a subset of the pairs, read in place
        ids = torch.tensor([shape[0] - 1, 0])
        sub = torch.ops.pyadv.ecc_moments(img, tmpl, M[ids], motion, margin, ids)
        torch.testing.assert_close(sub, cpu[ids], rtol=0, atol=0)
        torch.testing.assert_close(_C.emulated.ecc_moments(img, tmpl, M[ids], motion, margin, ids), sub, **tol)
        torch.testing.assert_close(ecc_moments_reference(img, tmpl, M[ids], motion, margin, ids), sub, **tol)


@pytest.mark.parametrize("motion", [0, 3])
def test_ecc_moments_samples_are_the_references_bit_for_bit(motion, isa):
    """With a one-hot template per pair, sum t v and sum J t are one pixel's sample and Jacobian:
    float32 samples rounded exactly as the reference rounds them, in the blocks whose corners are
    loaded as row runs (a translation) and in the gathered ones (a rotation), border pixels too,
    on every CPU kernel variant."""
    H = W = 12
    g = torch.Generator().manual_seed(7)
    img = torch.rand(1, 3, H, W, generator=g).expand(H * W, 3, H, W).contiguous()
    tmpl = torch.eye(H * W).view(H * W, H, W)
    c, s = math.cos(0.2), math.sin(0.2)
    warp = [[1, 0, 0.3], [0, 1, 0.45], [0, 0, 1]] if motion == 0 else [[c, -s, 1.2], [s, c, -0.7], [1e-3, 0, 1]]
    M = torch.tensor(warp, dtype=torch.float64).expand(H * W, 3, 3).contiguous()
    n = 2 if motion == 0 else 8
    cpu = torch.ops.pyadv.ecc_moments(img, tmpl, M, motion, 0)
    ref = ecc_moments_reference(img, tmpl, M, motion, 0)
    for cols in ([0, 5], list(range(6 + n, 6 + 2 * n))):  # count, the sample v; the Jacobian J
        assert torch.equal(cpu[:, cols], ref[:, cols])


def test_ecc_moments_edge_cases():
    img, tmpl, M = random_moment_inputs(2, 12, 12, torch.float64, seed=7)
    # A warp sending every pixel outside the image, one sending it to infinity: no valid pixel.
    M[0] = torch.tensor([[1, 0, 500.0], [0, 1, 0], [0, 0, 1]])
    M[1] = torch.tensor([[1, 0, 0.0], [0, 1, 0], [0, 0, 0]])
    out = torch.ops.pyadv.ecc_moments(img, tmpl, M, 3, 0)
    assert torch.equal(out, torch.zeros_like(out))
    # The identity on an exact grid: every pixel valid, sum I and sum T exact.
    eye = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    out = torch.ops.pyadv.ecc_moments(img, tmpl, eye, 0, 2)
    assert out[:, 0].tolist() == [64.0, 64.0]
    torch.testing.assert_close(out[:, 1], tmpl[:, 2:10, 2:10].sum((1, 2)))
    torch.testing.assert_close(out[:, 2], img[:, 0, 2:10, 2:10].sum((1, 2)))
    # Same sums for 1 and 2 threads (fixed row bands, added in order).
    img, tmpl, M = random_moment_inputs(3, 40, 37, torch.float64, seed=8)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.pyadv.ecc_moments(img, tmpl, M, 3, 0)
        torch.set_num_threads(2)
        two = torch.ops.pyadv.ecc_moments(img, tmpl, M, 3, 0)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one, two)
    # A channels-last image stack ([B, H, W, 3] in memory) is read in place, with the same sums.
    cl = img.contiguous(memory_format=torch.channels_last)
    assert not cl.is_contiguous()
    assert torch.equal(torch.ops.pyadv.ecc_moments(cl, tmpl, M, 3, 0), two)


@pytest.mark.parametrize("call,match", [
    (lambda: torch.ops.pyadv.ecc_moments(torch.rand(1, 2, 8, 8), torch.rand(1, 8, 8), torch.eye(3)[None], 0, 0),
     "img must be"),
    (lambda: torch.ops.pyadv.ecc_moments(torch.rand(1, 3, 8, 8), torch.rand(1, 8, 7), torch.eye(3)[None], 0, 0),
     "tmpl must be"),
    (lambda: torch.ops.pyadv.ecc_moments(torch.rand(1, 3, 8, 8), torch.rand(1, 8, 8), torch.eye(3)[None], 4, 0),
     "motion must be"),
    (lambda: torch.ops.pyadv.ecc_moments(torch.rand(1, 3, 8, 8), torch.rand(1, 8, 8), torch.eye(3)[None], 0, -1),
     "margin must be"),
    (lambda: torch.ops.pyadv.ecc_moments(torch.rand(1, 3, 8, 8), torch.rand(1, 8, 8), torch.eye(3).expand(2, 3, 3),
                                         0, 0), "M must have shape"),
    (lambda: torch.ops.pyadv.ecc_moments(torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8), torch.eye(3)[None], 0, 0,
                                         torch.tensor([2])), "ids must lie in"),
    (lambda: torch.ops.pyadv.ecc_moments(torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8), torch.eye(3)[None], 0, 0,
                                         torch.tensor([1.0])), "ids must be int64"),
])
def test_ecc_moments_bad_input(call, match):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        call()


@pytest.mark.parametrize("shape", [(2, 5, 7), (3, 12, 9), (2, 28, 28), (1, 3, 40)])
@pytest.mark.parametrize("gauss", [0, 3, 5, 7])
def test_ecc_prefilter_op_matches_torch_composition(shape, gauss, isa):
    from pyadv.metrics.ecc import _gauss_kernel, _prefilter_torch
    g = torch.Generator().manual_seed(3)
    t, i = torch.rand(shape, generator=g), torch.rand(shape, generator=g)
    k = _gauss_kernel(gauss, torch.float64) if gauss > 1 else torch.ones(1, dtype=torch.float64)
    T, S = torch.ops.pyadv.ecc_prefilter(t, i, k)
    if gauss // 2 < min(shape[1:]):  # torch's reflect padding needs the image larger than the radius
        Tr, Sr = _prefilter_torch(t[:, None], i[:, None], k)
        torch.testing.assert_close(T, Tr, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(S, Sr, rtol=1e-6, atol=1e-6)
    # Against OpenCV's own filters (GaussianBlur and a central-difference kernel, reflect-101).
    ref = cv2.GaussianBlur(i[0].numpy(), (gauss, gauss), 0) if gauss > 1 else i[0].numpy()
    np.testing.assert_allclose(S[0, 0].numpy(), ref, rtol=0, atol=2e-6)
    gx = cv2.filter2D(ref, -1, np.array([[-0.5, 0, 0.5]], np.float32), borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(S[0, 1].numpy(), gx, rtol=0, atol=2e-6)


def test_ecc_moments_opcheck():
    img, tmpl, M = random_moment_inputs(2, 10, 11, torch.float64, seed=9)
    torch.library.opcheck(torch.ops.pyadv.ecc_moments.default, (img, tmpl, M, 3, 1))
    torch.library.opcheck(torch.ops.pyadv.ecc_moments.default, (img, tmpl, M[1:], 3, 1, torch.tensor([1])))
    torch.library.opcheck(torch.ops.pyadv.ecc_prefilter.default,
                          (img[:, 0].float(), tmpl.float(), torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)))


@pytest.mark.slow
def test_noise_only_pairs_pass_exceeds_ssim_like_opencv():
    """Noise-only pairs (no motion): ECC's optimum is not the identity. Bilinear resampling at a
    sub-pixel offset averages neighbouring pixels, which attenuates independent per-pixel noise,
    so the correlation with the clean template rises as the warp leaves the identity; the
    resampled image is smoother than the noisy one and PASS > SSIM. pyadv follows ECC and shows
    the same effect as the OpenCV composition (the figures are printed); it stays small."""
    size = 28
    P = noise_pairs(size, 40, seed=1)
    t, x = P.template.double(), P.image.double()
    plain = ssim(x, t).numpy()
    ours = pass_score(x, t).numpy()
    cvs = []
    for k in range(len(t)):
        a, b = P.template[k, 0].numpy(), P.image[k, 0].numpy()
        W = opencv_ecc(a, b, 50, 1e-3)
        W = np.eye(3) if W is None else W
        al = cv2.warpPerspective(b, W.astype(np.float32), (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        cvs.append(structural_similarity(al.astype(np.float64), a.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=1.0))
    cvs = np.array(cvs)
    print(f"noise-only {size} px: pyadv PASS > SSIM on {np.mean(ours > plain):.0%}, mean excess "
          f"{np.mean(ours - plain):.4f}, max {np.max(ours - plain):.3f}; OpenCV composition on "
          f"{np.mean(cvs > plain):.0%}, mean {np.mean(cvs - plain):.4f}, max {np.max(cvs - plain):.3f}")
    assert np.mean(ours > plain) >= 0.9 and np.mean(cvs > plain) >= 0.9  # the documented effect
    assert np.max(ours - plain) <= 0.15


def test_identical_images_give_identity_and_pass_one():
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    r = ecc_align(x, x)
    torch.testing.assert_close(r.warp, torch.eye(3, dtype=torch.float64).expand(3, 3, 3), rtol=0, atol=1e-12)
    assert torch.equal(pass_score(x, x), torch.ones(3, dtype=torch.float64))
    xi = (x * 255).round()
    assert torch.equal(pass_score(xi, xi, integer=True), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("motion,make", [
    ("translation", lambda: np.array([[1, 0, 1.3], [0, 1, -0.8], [0, 0, 1.0]])),
    ("euclidean", lambda: np.array([[np.cos(0.02), -np.sin(0.02), 0.7], [np.sin(0.02), np.cos(0.02), 0.4], [0, 0, 1.0]])),
    ("affine", lambda: np.array([[1.01, 0.01, 0.9], [-0.008, 0.99, -0.6], [0, 0, 1.0]])),
])
def test_other_motions_recover_the_truth(motion, make):
    img = resize(data.camera()[100:356, 100:356].astype(np.float64) / 255, (96, 96), anti_aliasing=True)
    M = make()
    M_c = np.array([[1, 0, 48], [0, 1, 48], [0, 0, 1.0]]) @ M @ np.array([[1, 0, -48], [0, 1, -48], [0, 0, 1.0]])
    w = cv2.warpPerspective(img.astype(np.float32), np.linalg.inv(M_c), (96, 96),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    r = ecc_align(torch.from_numpy(img)[None, None], torch.from_numpy(w)[None, None].double(), motion, iters=100,
                  eps=1e-7)
    assert corner_error(r.warp[0].numpy(), M_c, 96) < 0.1


def test_uncorrelated_pairs_are_flagged_not_raised():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 1, 28, 28, generator=g), torch.rand(4, 1, 28, 28, generator=g)
    score, fallback, r = pass_score(b, a, return_details=True)
    assert torch.all(torch.isfinite(score)) and bool(fallback.any())
    assert torch.all((r.failed | r.rejected | ~r.converged)[fallback])


def test_pass_matches_opencv_plus_scikit_image_at_224():
    ps = pairs(224, 1, seed=5)
    t = torch.from_numpy(np.stack([p[0] for p in ps]))[:, None].double()
    i = torch.from_numpy(np.stack([p[1] for p in ps]))[:, None].double()
    ours = pass_score(i, t, iters=100, eps=1e-6)
    for k, (tmpl, img, _) in enumerate(ps):
        W = opencv_ecc(tmpl, img, 100, 1e-6)
        aligned = cv2.warpPerspective(img, W, (224, 224), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        ref = structural_similarity(aligned.astype(np.float64), tmpl.astype(np.float64), gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, data_range=1.0)
        assert abs(float(ours[k]) - ref) <= 2e-3


@pytest.mark.slow
@pytest.mark.parametrize("border", ["replicate", "constant"])
@pytest.mark.parametrize("size", [28, 32])
def test_pass_closer_to_true_alignment_than_opencv(size, border):
    ps = pairs(size, 20, seed=100 + size, border=border)
    t = torch.from_numpy(np.stack([p[0] for p in ps]))[:, None].double()
    i = torch.from_numpy(np.stack([p[1] for p in ps]))[:, None].double()
    ours = pass_score(i, t, iters=100).numpy()
    true = []
    cvs = []
    for k, (tmpl, img, M) in enumerate(ps):
        aligned = warp_perspective(torch.from_numpy(img)[None, None].double(), torch.from_numpy(M)[None])[0, 0]
        true.append(structural_similarity(aligned.numpy(), tmpl.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=1.0))
        W = opencv_ecc(tmpl, img, 100, 1e-3)
        W = np.eye(3) if W is None else W  # OpenCV raised: the identity, as pyadv's fallback
        al = cv2.warpPerspective(img, W.astype(np.float32), (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        cvs.append(structural_similarity(al.astype(np.float64), tmpl.astype(np.float64), gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False, data_range=1.0))
    true, cvs = np.array(true), np.array(cvs)
    assert np.mean(np.abs(ours - true)) <= np.mean(np.abs(cvs - true))


def test_bad_input():
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="motion must be one of"):
        ecc_align(x, x, "projective")
    with pytest.raises(ValueError, match="must both be"):
        ecc_align(x, x[:1])
    with pytest.raises(ValueError, match="gauss_filt_size must be 0"):
        ecc_align(x, x, gauss_filt_size=4)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ecc_align(torch.rand(1, 2, 16, 16), torch.rand(1, 2, 16, 16))
    with pytest.raises(ValueError, match="must both be"):
        pass_score(x, x[0])
    y = x.clone()
    y[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"image holds NaN or Inf \(pair 1\)"):
        ecc_align(x, y)
    with pytest.raises(ValueError, match=r"template holds NaN or Inf \(pair 1\)"):
        pass_score(x, y)
    y[1, 0, 3, 3] = -float("inf")
    with pytest.raises(ValueError, match=r"image holds NaN or Inf \(pair 1\)"):
        ecc_align(x, y)
    with pytest.raises(TypeError, match="floating-point"):
        ecc_align(torch.zeros(1, 1, 16, 16, dtype=torch.uint8), torch.zeros(1, 1, 16, 16, dtype=torch.uint8))


def solve_inputs(size=28, dtype=torch.float32):
    """A batch that takes every path of the alignment: photo pairs under small homographies (both
    borders), pairs needing no alignment, uncorrelated noise (fails or is rejected), a flat pair
    (zero Hessian), horizontal stripes (a singular, non-zero Hessian: the pseudo-inverse) and an
    identical pair."""
    from pyadv.metrics.ecc import _prepare

    wp = warped_pairs(size, 2, seed=1)
    wc = warped_pairs(size, 1, seed=2, border="constant")
    npairs = noise_pairs(size, 3, seed=3)
    g = torch.Generator().manual_seed(4)
    rand_t, rand_i = torch.rand(3, 1, size, size, generator=g), torch.rand(3, 1, size, size, generator=g)
    flat = torch.full((1, 1, size, size), 0.5)
    rows = torch.arange(size, dtype=torch.float32).view(1, 1, size, 1)
    stripes = lambda shift: (0.5 + 0.4 * torch.sin(2 * torch.pi * (rows - shift) / 9)).expand(1, 1, size, size)
    t = torch.cat([wp.template, wc.template, npairs.template, rand_t, flat, stripes(0), wp.template[:1]])
    i = torch.cat([wp.image, wc.image, npairs.image, rand_i, flat, stripes(0.7), wp.template[:1]])
    T, stack = _prepare(t, i, 5)
    return T.to(dtype), stack.to(dtype)


@pytest.mark.parametrize("motion", ["translation", "euclidean", "affine", "homography"])
@pytest.mark.parametrize("from_identity", [True, False])
@pytest.mark.parametrize("safeguards", [True, False])
def test_ecc_solve_op_matches_the_torch_loop(motion, from_identity, safeguards):
    from pyadv.metrics.ecc import _ecc, _ecc_loop

    T, stack = solve_inputs()
    init = None if from_identity else _ecc_loop(T, stack, "translation", 50, 1e-3, None, False, 3).warp
    results = []
    for dtype, margin in ((torch.float32, 3), (torch.float64, 0)):
        Td, sd = T.to(dtype), stack.to(dtype)
        got, want = _ecc(Td, sd, motion, 50, 1e-3, init, safeguards, margin), \
            _ecc_loop(Td, sd, motion, 50, 1e-3, init, safeguards, margin)
        # the same sums each iteration; only the small solves round differently (LU against
        # LAPACK's inverse), so the same iterations and flags, and warps equal to rounding. A
        # pair of uncorrelated noise may run off to warps of 1e14 (and "converge" there, with no
        # pixel left inside), where that rounding is amplified without bound: such warps are not
        # compared.
        assert torch.equal(got.iterations, want.iterations)
        for f in ("converged", "failed", "rejected"):
            assert torch.equal(getattr(got, f), getattr(want, f)), f
        ok = (want.converged & (want.warp.abs().flatten(1).amax(1) < 1e3)) | want.rejected
        assert int(ok.sum()) >= len(ok) - 5
        torch.testing.assert_close(got.warp[ok], want.warp[ok], rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(got.rho[ok], want.rho[ok], rtol=0, atol=1e-10, equal_nan=True)
        results.append(want)
    # every path was taken (float32, margin 3): converged pairs, failures, and (with safeguards)
    # rejections
    want = results[0]
    assert bool(want.converged.any()) and bool(want.failed.any())
    if safeguards:
        assert bool(want.rejected.any())


def test_ecc_solve_op_edge_cases():
    from pyadv.metrics.ecc import _ecc, _ecc_loop

    T, stack = solve_inputs(size=16)
    # one iteration; an eps no change can reach (no pair iterates: the identity is measured apart)
    for iters, eps in ((1, 1e-3), (50, 0.75)):
        got, want = _ecc(T, stack, "homography", iters, eps, None, True, 2), \
            _ecc_loop(T, stack, "homography", iters, eps, None, True, 2)
        assert torch.equal(got.iterations, want.iterations) and int(got.iterations.max()) == (iters if eps < 0.5 else 0)
        torch.testing.assert_close(got.warp, want.warp, rtol=0, atol=1e-9)
        torch.testing.assert_close(got.rho, want.rho, rtol=0, atol=1e-12, equal_nan=True)
    # the flat pair: a zero Hessian fails at once and keeps the identity; the stripes take the
    # pseudo-inverse and move along y only
    r = _ecc(T, stack, "translation", 50, 1e-3, None, False, 2)
    flat, stripes = len(T) - 3, len(T) - 2
    assert bool(r.failed[flat]) and torch.equal(r.warp[flat], torch.eye(3, dtype=torch.float64))
    assert not r.failed[stripes] and bool(r.converged[stripes])
    assert r.warp[stripes, 0, 2] == 0 and abs(float(r.warp[stripes, 1, 2]) - 0.7) < 0.05
    # no pairs
    empty = torch.ops.pyadv.ecc_solve(stack[:0], T[:0], torch.zeros(0, 3, 3, dtype=torch.float64), 3, 0, 5, 1e-3,
                                      True, True)
    assert [tuple(e.shape) for e in empty] == [(0, 3, 3), (0,), (0,), (0,), (0,), (0,)]
    # the same result for 1 and 2 threads (each pair is one thread's work, its sums in fixed bands;
    # the threads take blocks of pairs as they free up, so with enough pairs the split varies)
    T, stack = T.repeat(7, 1, 1), stack.repeat(7, 1, 1, 1)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _ecc(T, stack, "homography", 50, 1e-3, None, True, 2)
        torch.set_num_threads(2)
        twos = [_ecc(T, stack, "homography", 50, 1e-3, None, True, 2) for _ in range(3)]
    finally:
        torch.set_num_threads(n)
    for two in twos:
        assert torch.equal(one.warp, two.warp) and torch.equal(one.iterations, two.iterations)


@pytest.mark.parametrize("args,match", [
    ((5, 0, 0, 1e-3), "motion must be"),
    ((3, -1, 5, 1e-3), "margin must be"),
    ((3, 0, 0, 1e-3), "iters must be >= 1"),
    ((3, 0, 5, -1.0), "eps must be >= 0"),
])
def test_ecc_solve_bad_input(args, match):
    motion, margin, iters, eps = args
    eye = torch.eye(3, dtype=torch.float64)[None]
    with pytest.raises((ValueError, RuntimeError), match=match):
        torch.ops.pyadv.ecc_solve(torch.rand(1, 3, 8, 8), torch.rand(1, 8, 8), eye, motion, margin, iters, eps, True,
                                  True)
    with pytest.raises((ValueError, RuntimeError), match="M must have shape"):
        torch.ops.pyadv.ecc_solve(torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8), eye, 3, 0, 5, 1e-3, True, True)


def test_ecc_solve_opcheck():
    T, stack = solve_inputs(size=12)
    eye = torch.eye(3, dtype=torch.float64).expand(len(T), 3, 3).contiguous()
    torch.library.opcheck(torch.ops.pyadv.ecc_solve.default, (stack, T, eye, 3, 1, 10, 1e-3, True, True))


@pytest.mark.parametrize("motion,from_identity", [(0, True), (1, False), (2, False), (3, True)])
def test_ecc_solve_cuda_kernel_under_the_emulator_matches_the_cpu_op(motion, from_identity):
    T, stack = solve_inputs(size=12)
    M = torch.eye(3, dtype=torch.float64).expand(len(T), 3, 3).contiguous()
    if not from_identity:  # a translation start, as the coarse-to-fine safeguard gives
        M = torch.ops.pyadv.ecc_solve(stack, T, M, 0, 2, 50, 1e-3, False, True)[0]
    cpu = torch.ops.pyadv.ecc_solve(stack, T, M, motion, 2, 50, 1e-3, True, from_identity)
    emu = _C.emulated.ecc_solve(stack, T, M, motion, 2, 50, 1e-3, True, from_identity)
    # A block adds its sums in another order than the CPU's bands: equal to rounding. On 12 px
    # images a slowly converging pair can then stop one iteration apart (the eps rule on a
    # rounding-level difference), so: the same iterations and flags on nearly every pair, and
    # where they agree, warps equal to what that rounding becomes after a few solves.
    same = emu[2] == cpu[2]
    assert int(same.sum()) >= len(same) - 2
    for k in (3, 4, 5):
        assert torch.equal(emu[k][same], cpu[k][same])
    ok = same & ((cpu[3] & (cpu[0].abs().flatten(1).amax(1) < 1e3)) | cpu[5])
    assert int(ok.sum()) >= len(ok) - 6
    torch.testing.assert_close(emu[0][ok], cpu[0][ok], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(emu[1][ok], cpu[1][ok], rtol=0, atol=1e-6)
    torch.testing.assert_close(_C.emulated.ecc_solve(stack[:0], T[:0], M[:0], motion, 2, 5, 1e-3, True, True)[0],
                               torch.zeros(0, 3, 3, dtype=torch.float64))


def test_ecc_solve_op_matches_the_pure_torch_reference(monkeypatch):
    """The torch loop with the reference sums (pyadv.reference, no compiled op at all)."""
    import pyadv.metrics.ecc as E

    T, stack = solve_inputs(size=12, dtype=torch.float64)
    monkeypatch.setattr(E, "_moments", lambda img, tmpl, W, motion, margin, ids=None:
                        ecc_moments_reference(img, tmpl, W, E.MOTION_CODES[motion], margin, ids))
    for motion in ("translation", "homography"):
        got = E._ecc(T, stack, motion, 50, 1e-3, None, True, 2)
        want = E._ecc_loop(T, stack, motion, 50, 1e-3, None, True, 2)
        # the reference sums in another order: a pair at the eps rule's edge may stop one
        # iteration apart or converge on its last allowed one in only one of them
        same = (got.iterations == want.iterations) & (got.converged == want.converged)
        assert int(same.sum()) >= len(same) - 3
        for f in ("failed", "rejected"):
            assert torch.equal(getattr(got, f)[same], getattr(want, f)[same]), f
        ok = same & ((want.converged & (want.warp.abs().flatten(1).amax(1) < 1e3)) | want.rejected)
        assert int(ok.sum()) >= len(ok) - 6
        torch.testing.assert_close(got.warp[ok], want.warp[ok], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("motion", ["affine", "homography"])
@pytest.mark.parametrize("safeguards", [True, False])
def test_ecc_solve_coarse_to_fine_in_one_call_equals_two(motion, safeguards):
    """coarse=True (ecc_align's path on small images): the translation fit and the motion fit
    in one call, the identity's correlation taken from the first fit, is exactly the two calls,
    the second measuring the identity again; and the torch loop's two fits to rounding."""
    from pyadv.metrics.ecc import _ecc, _ecc_loop

    T, stack = solve_inputs()
    for dtype, margin in ((torch.float32, 3), (torch.float64, 0)):
        Td, sd = T.to(dtype), stack.to(dtype)
        one = _ecc(Td, sd, motion, 50, 1e-3, None, safeguards, margin, coarse=True)
        first = _ecc(Td, sd, "translation", 50, 1e-3, None, False, margin)
        two = _ecc(Td, sd, motion, 50, 1e-3, first.warp, safeguards, margin)
        for f in ("warp", "rho", "iterations", "converged", "failed", "rejected"):
            assert torch.equal(getattr(one, f), getattr(two, f)), f
        loop = _ecc_loop(Td, sd, motion, 50, 1e-3, _ecc_loop(Td, sd, "translation", 50, 1e-3, None, False,
                                                              margin).warp, safeguards, margin)
        assert torch.equal(one.iterations, loop.iterations) and torch.equal(one.rejected, loop.rejected)
        ok = (loop.converged & (loop.warp.abs().flatten(1).amax(1) < 1e3)) | loop.rejected
        torch.testing.assert_close(one.warp[ok], loop.warp[ok], rtol=1e-7, atol=1e-9)
    if motion != "homography" or not safeguards:
        return
    # the emulated CUDA kernel takes the same path
    T, stack = solve_inputs(size=12, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64).expand(len(T), 3, 3).contiguous()
    code = {"affine": 2, "homography": 3}[motion]
    cpu = torch.ops.pyadv.ecc_solve(stack, T, eye, code, 2, 50, 1e-3, safeguards, True, True)
    emu = _C.emulated.ecc_solve(stack, T, eye, code, 2, 50, 1e-3, safeguards, True, True)
    # (another summation order: a pair at the eps rule's edge may stop or converge apart, and a
    # pair of identical images sits at a correlation of 1, where the identity check compares
    # equal values)
    same = (emu[2] == cpu[2]) & (emu[3] == cpu[3])
    assert int(same.sum()) >= len(same) - 3
    assert torch.equal(emu[4][same], cpu[4][same])
