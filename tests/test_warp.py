"""Perspective warp against OpenCV's warpPerspective (WARP_INVERSE_MAP, constant border 0), a
pure-PyTorch bilinear reference, and the emulated CUDA kernel."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cv2  # a declared test dependency (pyproject.toml [test])

from pyadv import _C
from pyadv.metrics import warp_perspective


def homographies(n, size, seed=0):
    """Small homographies about the image centre: shifts up to 2 px, rotations up to 2 degrees,
    slight perspective, plus one that sends part of the image outside."""
    rng = np.random.default_rng(seed)
    H, W = size
    out = []
    for i in range(n):
        a = np.deg2rad(rng.uniform(-2, 2))
        c, s = np.cos(a), np.sin(a)
        t = rng.uniform(-2, 2, 2)
        if i == n - 1:
            t = np.array([W / 3, -H / 4])
        R = np.array([[c, -s, 0], [s, c, 0], [rng.uniform(-1e-3, 1e-3), rng.uniform(-1e-3, 1e-3), 1.0]])
        C = np.array([[1, 0, W / 2], [0, 1, H / 2], [0, 0, 1.0]])
        Ci = np.array([[1, 0, -W / 2], [0, 1, -H / 2], [0, 0, 1.0]])
        T = np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1.0]])
        out.append(T @ C @ R @ Ci)
    return np.stack(out)


def reference(img, M):
    """Bilinear with zero outside, at the exact position, through grid_sample."""
    B, C, H, W = img.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(-1, 3)
    src = torch.einsum("bij,pj->bpi", M, pts)
    sx, sy = src[..., 0] / src[..., 2], src[..., 1] / src[..., 2]
    grid = torch.stack([2 * sx / (W - 1) - 1, 2 * sy / (H - 1) - 1], -1).view(B, H, W, 2)
    return F.grid_sample(img, grid.to(img.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


@pytest.mark.parametrize("size", [(28, 28), (32, 32), (64, 80)])
def test_matches_opencv(size):
    rng = np.random.default_rng(1)
    img = rng.random((3,) + size).astype(np.float32)
    Ms = homographies(4, size)
    got = warp_perspective(torch.from_numpy(np.repeat(img[None], 4, 0)), torch.from_numpy(Ms))
    for b, M in enumerate(Ms):
        ref = cv2.warpPerspective(img.transpose(1, 2, 0), M, (size[1], size[0]),
                                  flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=0)
        # OpenCV interpolates in float32, pyadv in double: they differ by float32 rounding.
        assert np.abs(got[b].numpy().transpose(1, 2, 0) - ref).max() <= 5e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_mode_matches_reference_and_emulator(dtype, isa):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 2, 20, 24, generator=g).to(dtype)
    M = torch.from_numpy(homographies(3, (20, 24), seed=2))
    got = warp_perspective(img, M)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(got, reference(img.double(), M).to(dtype), rtol=0, atol=tol)
    torch.testing.assert_close(_C.emulated.warp_perspective(img, M, 20, 24), got, rtol=0, atol=0)


@pytest.mark.parametrize("hw", [(1, 9), (7, 1), (2, 2), (3, 17), (9, 30)])
def test_thin_and_tiny_images_match_the_emulated_kernel(hw, isa):
    # The CPU kernel blends 8 pixels at a time and reads neighbours without bounds checks only
    # where all four lie inside; thin images have none, every pixel takes the general path.
    g = torch.Generator().manual_seed(4)
    img = torch.rand(3, 2, *hw, generator=g)
    M = torch.eye(3, dtype=torch.float64).repeat(3, 1, 1)
    M[1, :2, 2] = torch.tensor([0.4, -0.3], dtype=torch.float64)
    M[2, :2, :2] += 0.05
    M[2, 2, :2] = 1e-3
    for out in (hw, (hw[0] + 3, hw[1] + 9)):
        got = torch.ops.pyadv.warp_perspective(img, M, *out)
        torch.testing.assert_close(_C.emulated.warp_perspective(img, M, *out), got, rtol=0, atol=0)


def test_identity_and_size():
    img = torch.rand(2, 3, 9, 11)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.equal(warp_perspective(img, eye), img)
    assert warp_perspective(img, eye, (5, 7)).shape == (2, 3, 5, 7)
    assert torch.equal(warp_perspective(img[0], eye), img[0])


def test_bad_input():
    img = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"M must have shape \[B, 3, 3\]"):
        warp_perspective(img, torch.eye(3)[None])
    with pytest.raises(ValueError, match="M holds NaN"):
        warp_perspective(img, torch.full((3, 3), float("nan")))
    with pytest.raises(TypeError, match="img must be float32 or float64"):
        warp_perspective(img.long(), torch.eye(3))
