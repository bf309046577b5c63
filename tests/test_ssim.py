"""SSIM against scikit-image (real photos, digits, random images, perturbed copies), against
the pure-PyTorch reference and autograd, the emulated CUDA kernels, and the norms."""
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage import data
from skimage.metrics import structural_similarity
from skimage.transform import resize

from pyadv import _C
from pyadv.data import digits
from pyadv.metrics import lp_norms, ssim, ssim_map
from pyadv.reference import ssim_reference


def photos():
    out = {}
    for name in ("camera", "astronaut", "coffee", "chelsea"):
        img = getattr(data, name)().astype(np.float64) / 255
        crop = img[40:200, 60:260]
        out[name] = resize(crop, (48, 60) + crop.shape[2:], anti_aliasing=True)
    return out


def perturbations(img, rng):
    return {
        "sign_noise": np.clip(img + rng.choice([-8 / 255, 8 / 255], img.shape), 0, 1),
        "blur": gaussian_filter(img, sigma=(1.0, 1.0) + (0,) * (img.ndim - 2)),
        "contrast": np.clip(0.5 + 0.7 * (img - 0.5), 0, 1),
    }


def cases():
    rng = np.random.default_rng(0)
    imgs = dict(photos())
    d, _ = digits("test", 28, dtype=torch.float64)
    imgs["digit"] = d[0, 0].numpy()
    imgs["random_grey"] = rng.random((20, 23))
    imgs["random_rgb"] = rng.random((17, 19, 3))
    for name, img in imgs.items():
        for pname, other in perturbations(img, rng).items():
            yield f"{name}-{pname}", img, other


def skimage_ssim(a, b):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
                                 channel_axis=2 if a.ndim == 3 else None)


def to_torch(a, dtype):
    t = torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
    return t.permute(2, 0, 1) if t.dim() == 3 else t[None]


CASES = list(cases())


@pytest.mark.parametrize("name,a,b", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_matches_scikit_image(isa, name, a, b, dtype, tol):
    ref = skimage_ssim(a.astype(np.float64 if dtype == torch.float64 else np.float32),
                       b.astype(np.float64 if dtype == torch.float64 else np.float32))
    got = ssim(to_torch(a, dtype), to_torch(b, dtype))
    assert abs(float(got) - ref) <= tol


def test_batched_equals_one_by_one_and_identity_is_one():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 20, 24, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    batch = ssim(x, y)
    assert torch.allclose(batch, torch.stack([ssim(x[i], y[i]) for i in range(4)]), rtol=0, atol=1e-15)
    assert torch.equal(ssim(x, x), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(batch, ssim_reference(x, y), rtol=0, atol=1e-12)
    _, ref_map = ssim_reference(x, y, return_map=True)
    torch.testing.assert_close(ssim_map(x, y), ref_map, rtol=0, atol=1e-12)


def test_gradients():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 2, 13, 15, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 2, 13, 15, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ssim(a, b), (x, y))
    w = torch.tensor([0.3, -1.2], dtype=torch.float64)
    gx, gy = torch.autograd.grad((ssim(x, y) * w).sum(), (x, y))
    rx, ry = torch.autograd.grad((ssim_reference(x, y) * w).sum(), (x, y))
    torch.testing.assert_close(gx, rx, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gy, ry, rtol=1e-9, atol=1e-12)
    # Only one side needs a gradient: the other is not computed.
    gx_only = torch.autograd.grad(ssim(x, y.detach()).sum(), x)[0]
    torch.testing.assert_close(gx_only, torch.autograd.grad(ssim(x, y).sum(), x)[0])


@pytest.mark.parametrize("offset", [0.0, 0.5, 0.95])
def test_float32_low_contrast_on_bright_images_matches_float64(offset):
    # Low-contrast texture on a bright background is where E[x^2] - E[x]^2 cancels most in
    # float32; the kernels centre each plane on its mean first, so float32 stays close to float64.
    g = torch.Generator().manual_seed(5)
    base = offset + 0.02 * torch.rand(8, 3, 40, 36, generator=g, dtype=torch.float64)
    other = (base + 0.005 * torch.randn(base.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    exact = ssim(base, other)
    got = ssim(base.float(), other.float()).double()
    assert (got - exact).abs().max() <= 1e-5
    m64, m32 = ssim_map(base, other), ssim_map(base.float(), other.float()).double()
    assert (m32 - m64).abs().max() <= 1e-4


def test_gradients_with_other_constants_and_range():
    # The backward recomputes the forward: it must use the same K1, K2, data_range and window.
    g = torch.Generator().manual_seed(7)
    x = (255 * torch.rand(2, 2, 15, 14, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = (255 * torch.rand(2, 2, 15, 14, generator=g, dtype=torch.float64)).requires_grad_(True)
    kw = dict(data_range=255.0, sigma=1.2, K1=0.02, K2=0.05)
    assert torch.autograd.gradcheck(lambda a, b: ssim(a, b, win_size=7, **kw), (x, y))
    gx, gy = torch.autograd.grad(ssim(x, y, win_size=7, **kw).sum(), (x, y))
    rx, ry = torch.autograd.grad(ssim_reference(x, y, win=7, **kw).sum(), (x, y))
    torch.testing.assert_close(gx, rx, rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(gy, ry, rtol=1e-9, atol=1e-14)


def test_variance_clamp_keeps_ssim_at_most_one():
    # A constant image in float32: E[x^2] - E[x]^2 can round below 0.
    x = torch.full((1, 1, 16, 16), 0.7, dtype=torch.float32)
    y = x.clone()
    y[0, 0, 8, 8] += 1e-3
    v = ssim(x, y)
    assert float(v) <= 1.0 + 1e-6 and torch.isfinite(v)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,win", [((2, 2, 14, 16), 11), ((1, 1, 40, 29), 11), ((1, 2, 30, 35), 21), ((1, 1, 9, 12), 3)])
def test_emulated_cuda_matches_cpu(dtype, shape, win):
    # Tiles of 16 (8 for windows over 15) with partial edge tiles, under the emulator's
    # per-thread execution and barriers.
    g = torch.Generator().manual_seed(2)
    x = torch.rand(shape, generator=g).to(dtype)
    y = (x + 0.2 * torch.rand(x.shape, generator=g).to(dtype)).clamp(0, 1)
    cpu = torch.ops.pyadv.ssim_forward(x, y, win, 1.5, 0.01, 0.03, 1.0, True, True)
    emu = _C.emulated.ssim_forward(x, y, win, 1.5, 0.01, 0.03, 1.0, True, True)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for a, b in zip(cpu, emu):
        torch.testing.assert_close(b, a, **tol)
    grad = torch.linspace(1.0, -2.0, shape[0], dtype=dtype)
    for a, b in zip(torch.ops.pyadv.ssim_backward(grad, x, y, win, 1.5, 0.01, 0.03, 1.0),
                    _C.emulated.ssim_backward(grad, x, y, win, 1.5, 0.01, 0.03, 1.0)):
        torch.testing.assert_close(b, a, **tol)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ssim(torch.rand(1, 1, 10, 20), torch.rand(1, 1, 10, 20)), ValueError, "win_size exceeds image extent"),
    (lambda: ssim(torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 13)), ValueError, "y must have x's shape"),
    (lambda: ssim(torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12).double()), TypeError, "y must have x's dtype"),
    (lambda: ssim(torch.rand(12, 12), torch.rand(12, 12), win_size=4), ValueError, "win_size must be odd"),
    (lambda: ssim(torch.rand(12, 12), torch.rand(12, 12), data_range=0), ValueError, "data_range must be > 0"),
    (lambda: ssim(torch.rand(2, 1, 1, 12, 12), torch.rand(2, 1, 1, 12, 12)), ValueError, "must be"),
    (lambda: ssim(torch.zeros(1, 1, 12, 12, dtype=torch.uint8), torch.zeros(1, 1, 12, 12, dtype=torch.uint8)),
     ValueError, "pass data_range"),
    (lambda: ssim(torch.rand(12, 12), torch.rand(12, 12), sigma=-1.0), ValueError, "sigma must be > 0"),
    (lambda: ssim(torch.rand(12, 12), torch.rand(12, 12), data_range=-2), ValueError, "data_range must be > 0"),
    (lambda: ssim(torch.rand(2, 1, 12, 12).index_put_((torch.tensor([1]), torch.tensor([0]), torch.tensor([3]),
                                                        torch.tensor([4])), torch.tensor(float("nan"))),
                  torch.rand(2, 1, 12, 12)), ValueError, "image 1, channel 0 holds NaN or Inf"),
    (lambda: _C.emulated.ssim_forward(torch.full((1, 1, 12, 12), float("inf")), torch.rand(1, 1, 12, 12), 11, 1.5,
                                      0.01, 0.03, 1.0, False, False), ValueError, "holds NaN or Inf"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_integer_images_with_a_data_range_match_scikit_image():
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (30, 33), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    got = ssim(torch.from_numpy(a), torch.from_numpy(b), data_range=255)
    assert abs(float(got) - ref) <= 1e-5


def test_opcheck():
    x, y = torch.rand(2, 1, 12, 13, dtype=torch.float64), torch.rand(2, 1, 12, 13, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pyadv.ssim_forward.default, (x, y, 11, 1.5, 0.01, 0.03, 1.0, True, True))
    torch.library.opcheck(torch.ops.pyadv.ssim_backward.default,
                          (torch.ones(2, dtype=torch.float64), x, y, 11, 1.5, 0.01, 0.03, 1.0))


def test_lp_norms():
    x = torch.zeros(2, 3, 4, 4)
    adv = x.clone()
    adv[0, :, 1, 1] = 0.5          # one pixel, three components
    adv[0, 0, 2, 3] = -0.25
    adv[1, 2, 0, 0] = 1.0
    n = lp_norms(adv, x)
    assert n["l0"].tolist() == [2, 1] and n["l0_components"].tolist() == [4, 1]
    assert n["linf"].tolist() == [0.5, 1.0]
    assert n["l2"][0].item() == pytest.approx((3 * 0.25 + 0.0625) ** 0.5)
    assert n["l2_per_pixel"][1].item() == pytest.approx(1.0 / 48 ** 0.5)
    assert lp_norms(adv, x, eps=0.3)["l0"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="same shape"):
        lp_norms(adv[:, :2], x)
