"""Alignment pairs with a known answer, for testing and benchmarking ECC and PASS (no network):
crops of scikit-image's bundled photos, warped by small random homographies about the centre
(0.5 to 2 px shifts, rotations up to 2 degrees, slight perspective), plus sign noise."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["AlignmentPairs", "PHOTOS", "small_homographies", "warped_pairs", "noise_pairs"]

PHOTOS = ("camera", "astronaut", "coffee", "chelsea")


class AlignmentPairs(NamedTuple):
    template: torch.Tensor  # [n, 1, size, size] float32 in [0, 1]
    image: torch.Tensor     # [n, 1, size, size]: image(M x) = template(x) + noise
    warp: torch.Tensor      # [n, 3, 3] float64, the true warp M (template -> image coordinates)


def _photo(name: str, size: int) -> np.ndarray:
    try:
        from skimage import data
        from skimage.transform import resize
    except ImportError as e:  # a test/benchmark dependency, not a run-time one
        raise ImportError("alignment pairs need scikit-image (pip install 'pyadv[test]')") from e

    img = getattr(data, name)()
    if img.ndim == 3:
        img = img.mean(2)
    return resize(img[40:296, 80:336].astype(np.float64) / 255, (size, size), anti_aliasing=True)


def small_homographies(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 3, 3]: a shift of 0.5 to 2 px per axis, a rotation up to 2 degrees and a perspective
    term moving the corners by up to about 0.7 px (scaled to the image), about the centre."""
    out = np.empty((n, 3, 3))
    C = np.array([[1, 0, size / 2], [0, 1, size / 2], [0, 0, 1.0]])
    Ci = np.linalg.inv(C)
    for k in range(n):
        a = np.deg2rad(rng.uniform(-2, 2))
        c, s = np.cos(a), np.sin(a)
        t = rng.uniform(0.5, 2, 2) * rng.choice([-1, 1], 2)
        p = rng.uniform(-3e-5, 3e-5, 2) * (224 / size)
        R = np.array([[c, -s, 0], [s, c, 0], [p[0], p[1], 1.0]])
        T = np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1.0]])
        out[k] = T @ C @ R @ Ci
    return out


def _warp(img: torch.Tensor, M: torch.Tensor, border: str) -> torch.Tensor:
    """out(x) = img(M^-1 x), bilinear on pixel centres, in float64."""
    n, _, H, W = img.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                            indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(-1, 3)
    src = pts @ torch.linalg.inv(M).transpose(1, 2)  # [n, P, 3]
    sx, sy = src[..., 0] / src[..., 2], src[..., 1] / src[..., 2]
    grid = torch.stack([sx / (W - 1) * 2 - 1, sy / (H - 1) * 2 - 1], -1).reshape(n, H, W, 2)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border" if border == "replicate" else "zeros",
                         align_corners=True)


def warped_pairs(size: int, per_photo: int, seed: int = 0, *, noise: float = 8 / 255, border: str = "replicate",
                 photos: tuple[str, ...] = PHOTOS) -> AlignmentPairs:
    """``per_photo`` pairs from each photo (grey, resized to size x size): the template, and the
    template warped by a small random homography with +-``noise`` sign noise, clipped to [0, 1].
    ``border`` is what the warp brings in at the edges: "replicate" (edge pixels) or "constant"
    (zeros, a harder case for alignment on small images)."""
    if not set(photos) <= set(PHOTOS) or not photos:
        raise ValueError(f"photos must be a non-empty subset of {PHOTOS}, got {photos}")
    if border not in ("replicate", "constant"):
        raise ValueError(f"border must be 'replicate' or 'constant', got {border!r}")
    if size < 8 or per_photo < 1:
        raise ValueError(f"size must be >= 8 and per_photo >= 1, got {size} and {per_photo}")
    rng = np.random.default_rng(seed)
    tmpl, warps = [], []
    for name in photos:
        img = _photo(name, size)
        for M in small_homographies(per_photo, size, rng):
            tmpl.append(img)
            warps.append(M)
    t = torch.from_numpy(np.stack(tmpl))[:, None]
    M = torch.from_numpy(np.stack(warps))
    w = _warp(t, M, border)
    signs = torch.from_numpy(rng.choice([-1.0, 1.0], w.shape))
    image = (w + noise * signs).clamp(0, 1)
    return AlignmentPairs(t.float(), image.float(), M)


def noise_pairs(size: int, n: int, seed: int = 0, *, noise: float = 8 / 255,
                photos: tuple[str, ...] = PHOTOS) -> AlignmentPairs:
    """Pairs that need no alignment: photo crops and the same crops plus +-``noise`` sign noise
    (the true warp is the identity). Crops are taken at random offsets of the photos."""
    rng = np.random.default_rng(seed)
    base = [_photo(name, 2 * size) for name in photos]
    tmpl = []
    for k in range(n):
        img = base[k % len(base)]
        r, c = rng.integers(0, size + 1, 2)
        tmpl.append(img[r:r + size, c:c + size])
    t = torch.from_numpy(np.stack(tmpl))[:, None]
    image = (t + noise * torch.from_numpy(rng.choice([-1.0, 1.0], t.shape))).clamp(0, 1)
    return AlignmentPairs(t.float(), image.float(), torch.eye(3, dtype=torch.float64).expand(n, 3, 3).clone())
