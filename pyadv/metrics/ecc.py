"""Batched ECC image alignment (Evangelidis and Psarakis 2008), following OpenCV's
findTransformECC step for step, many pairs at once, each stopping on its own.

``ecc_align(template, image)`` finds the warp W mapping template coordinates to image
coordinates that maximises the enhanced correlation coefficient between the template and the
image warped back (``warp_perspective(image, W)``). As OpenCV: both images are Gaussian
pre-filtered (``gauss_filt_size``, OpenCV's default 5; sigma from the size by OpenCV's rule),
image gradients are central differences, each iteration warps the image and its gradients,
projects onto the Jacobian of the motion, and stops after ``iters`` iterations or when the
correlation changes by less than ``eps`` (OpenCV's defaults: 50 and 1e-3). OpenCV raises when
a pair cannot converge; here such a pair keeps its last warp and is flagged. ``safeguards``:
on images smaller than 64 px affine and homography fits start from a translation fit
(coarse to fine), and a final warp that correlates worse than the identity is replaced by the
identity and flagged. This first version runs the inner steps as batched torch ops around the
compiled warp; moving them into kernels is future work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from .warp import warp_perspective

MOTIONS = {"translation": 2, "euclidean": 3, "affine": 6, "homography": 8}
#: Below this side length (pixels) the coarse-to-fine safeguard starts affine/homography fits
#: from a translation fit.
SMALL = 64


@dataclass
class ECCResult:
    warp: torch.Tensor        # [B, 3, 3], template -> image coordinates
    rho: torch.Tensor         # [B] final correlation coefficient
    iterations: torch.Tensor  # [B]
    converged: torch.Tensor   # [B] stopped by the eps rule
    failed: torch.Tensor      # [B] OpenCV would have raised (correlation being minimised, NaN)
    rejected: torch.Tensor    # [B] the safeguard replaced a warp worse than the identity


def _gauss_kernel(size: int, dtype) -> torch.Tensor:
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for sigma = 0
    k = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (k / sigma) ** 2)
    return (g / g.sum()).to(dtype)


def _filter(img: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    """Separable correlation with OpenCV's default border (BORDER_REFLECT_101)."""
    px, py = len(kx) // 2, len(ky) // 2
    x = F.pad(img, (px, px, 0, 0), mode="reflect") if px else img
    x = F.conv2d(x, kx.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, py, py), mode="reflect") if py else x
    return F.conv2d(x, ky.view(1, 1, -1, 1))


def _luma(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    if x.shape[1] != 1:
        raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
    return x


def _jacobian(motion: str, gx, gy, X, Y, W):
    """[B, n_params, P] Jacobian columns in OpenCV's parameter order."""
    if motion == "translation":
        return torch.stack([gx, gy], 1)
    if motion == "affine":
        return torch.stack([gx * X, gy * X, gx * Y, gy * Y, gx, gy], 1)
    if motion == "euclidean":
        c, s = W[:, 0, 0, None], W[:, 1, 0, None]
        hx, hy = -(X * s) - (Y * c), (X * c) - (Y * s)
        return torch.stack([gx * hx + gy * hy, gx, gy], 1)
    h = W
    den = X * h[:, 2, 0, None] + Y * h[:, 2, 1, None] + 1.0
    hx = (-X * h[:, 0, 0, None] - Y * h[:, 0, 1, None] - h[:, 0, 2, None]) / den
    hy = (-X * h[:, 1, 0, None] - Y * h[:, 1, 1, None] - h[:, 1, 2, None]) / den
    gxd, gyd = gx / den, gy / den
    t = hx * gxd + hy * gyd
    return torch.stack([gxd * X, gyd * X, t * X, gxd * Y, gyd * Y, t * Y, gxd, gyd], 1)


def _update(motion: str, W: torch.Tensor, dp: torch.Tensor) -> torch.Tensor:
    W = W.clone()
    if motion == "translation":
        W[:, 0, 2] += dp[:, 0]
        W[:, 1, 2] += dp[:, 1]
    elif motion == "affine":
        W[:, 0, 0] += dp[:, 0]
        W[:, 1, 0] += dp[:, 1]
        W[:, 0, 1] += dp[:, 2]
        W[:, 1, 1] += dp[:, 3]
        W[:, 0, 2] += dp[:, 4]
        W[:, 1, 2] += dp[:, 5]
    elif motion == "euclidean":
        theta = torch.asin(W[:, 1, 0].clamp(-1, 1)) + dp[:, 0]
        W[:, 0, 2] += dp[:, 1]
        W[:, 1, 2] += dp[:, 2]
        W[:, 0, 0], W[:, 0, 1] = torch.cos(theta), -torch.sin(theta)
        W[:, 1, 0], W[:, 1, 1] = torch.sin(theta), torch.cos(theta)
    else:
        W[:, 0, 0] += dp[:, 0]
        W[:, 1, 0] += dp[:, 1]
        W[:, 2, 0] += dp[:, 2]
        W[:, 0, 1] += dp[:, 3]
        W[:, 1, 1] += dp[:, 4]
        W[:, 2, 1] += dp[:, 5]
        W[:, 0, 2] += dp[:, 6]
        W[:, 1, 2] += dp[:, 7]
    return W


def _correlation(tmpl: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    n = mask.sum(1).clamp_min(1)
    tz = (tmpl - (tmpl * mask).sum(1, keepdim=True) / n[:, None]) * mask
    iz = (warped - (warped * mask).sum(1, keepdim=True) / n[:, None]) * mask
    return (tz * iz).sum(1) / (tz.norm(dim=1) * iz.norm(dim=1)).clamp_min(1e-30)


def ecc_align(template: torch.Tensor, image: torch.Tensor, motion: str = "homography", *, iters: int = 50,
              eps: float = 1e-3, gauss_filt_size: int = 5, init: Optional[torch.Tensor] = None,
              safeguards: bool = True) -> ECCResult:
    if safeguards and init is None and motion in ("affine", "homography") and min(template.shape[-2:]) < SMALL:
        # Coarse to fine in the motion model on small images: a translation first, then the full
        # motion from it. There the 8-parameter fit from the identity runs off on a few percent of
        # pairs (OpenCV too); from the translation it did on none in tests/test_ecc.py. Larger
        # images follow OpenCV's path exactly.
        first = _ecc(template, image, "translation", iters, eps, gauss_filt_size, None, False)
        init = first.warp
    return _ecc(template, image, motion, iters, eps, gauss_filt_size, init, safeguards)


def _ecc(template, image, motion, iters, eps, gauss_filt_size, init, safeguards) -> ECCResult:
    """Aligns each image [B, C, H, W] onto its template (same shape; RGB aligns on luma).
    Returns the warps [B, 3, 3] (template -> image coordinates, the convention of
    ``warp_perspective`` and of cv2.findTransformECC), the correlations, iterations used and
    the flags described in the module docstring."""
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {sorted(MOTIONS)}, got {motion!r}")
    if template.shape != image.shape or template.dim() != 4:
        raise ValueError(f"template and image must both be [B, C, H, W], got {tuple(template.shape)} and "
                         f"{tuple(image.shape)}")
    if gauss_filt_size < 0 or (gauss_filt_size and gauss_filt_size % 2 == 0):
        raise ValueError(f"gauss_filt_size must be 0 (no filter) or odd, got {gauss_filt_size}")
    if iters < 1 or not eps >= 0:
        raise ValueError(f"iters must be >= 1 and eps >= 0, got {iters} and {eps}")
    dtype = torch.float64
    B, _, H, Wd = template.shape
    T = _luma(template.to(dtype))
    I = _luma(image.to(dtype))
    if gauss_filt_size > 1:
        k = _gauss_kernel(gauss_filt_size, dtype)
        T, I = _filter(T, k, k), _filter(I, k, k)
    d = torch.tensor([-0.5, 0.0, 0.5], dtype=dtype)
    one = torch.ones(1, dtype=dtype)
    gxI, gyI = _filter(I, d, one), _filter(I, one, d)
    stack = torch.cat([I, gxI, gyI, torch.ones_like(I)], 1)  # warped together
    ys, xs = torch.meshgrid(torch.arange(H, dtype=dtype), torch.arange(Wd, dtype=dtype), indexing="ij")
    X, Y = xs.reshape(1, -1), ys.reshape(1, -1)
    Tf = T.reshape(B, -1)
    W = (torch.eye(3, dtype=dtype).expand(B, 3, 3).clone() if init is None
         else torch.as_tensor(init, dtype=dtype).expand(B, 3, 3).clone().contiguous())
    rho = torch.full((B,), -1.0, dtype=dtype)
    last = torch.full((B,), -eps, dtype=dtype)
    active = torch.ones(B, dtype=torch.bool)
    failed = torch.zeros(B, dtype=torch.bool)
    its = torch.zeros(B, dtype=torch.long)
    for _ in range(iters):
        idx = (active & ((rho - last).abs() >= eps)).nonzero().flatten()
        if len(idx) == 0:
            break
        w = W[idx]
        warped = warp_perspective(stack[idx], w)
        img, gx, gy = (warped[:, c].reshape(len(idx), -1) for c in range(3))
        mask = (warped[:, 3].reshape(len(idx), -1) > 0.999).to(dtype)  # pixels whose source lies inside
        n = mask.sum(1).clamp_min(1)
        tz = (Tf[idx] - (Tf[idx] * mask).sum(1, keepdim=True) / n[:, None]) * mask
        iz = (img - (img * mask).sum(1, keepdim=True) / n[:, None]) * mask
        J = _jacobian(motion, gx * mask, gy * mask, X, Y, w)
        Hs = J @ J.transpose(1, 2)
        Hinv = torch.linalg.pinv(Hs)
        corr = (tz * iz).sum(1)
        inorm, tnorm = iz.norm(dim=1), tz.norm(dim=1)
        last[idx] = rho[idx]
        rho[idx] = corr / (inorm * tnorm).clamp_min(1e-30)
        ip = (J @ iz[..., None])[..., 0]
        tp = (J @ tz[..., None])[..., 0]
        iph = (Hinv @ ip[..., None])[..., 0]
        lam_n = inorm**2 - (ip * iph).sum(1)
        lam_d = corr - (tp * iph).sum(1)
        bad = ~(lam_d > 0) | torch.isnan(rho[idx])
        lam = lam_n / torch.where(bad, torch.ones_like(lam_d), lam_d)
        err = lam[:, None] * tz - iz
        dp = (Hinv @ (J @ err[..., None]))[..., 0]
        new = _update(motion, w, dp)
        good = ~bad & torch.isfinite(new).flatten(1).all(1)
        W[idx[good]] = new[good]
        its[idx] += 1
        failed[idx[~good]] = True
        active[idx[~good]] = False
    converged = ~failed & ((rho - last).abs() < eps)
    rejected = torch.zeros(B, dtype=torch.bool)
    if safeguards:
        eye = torch.eye(3, dtype=dtype).expand(B, 3, 3)
        stackI = torch.cat([I, torch.ones_like(I)], 1)
        def score(warps):
            out = warp_perspective(stackI, warps)
            return _correlation(Tf, out[:, 0].reshape(B, -1), (out[:, 1].reshape(B, -1) > 0.999).to(dtype))
        final, ident = score(W), score(eye)
        rejected = ~(final >= ident) | ~torch.isfinite(W).flatten(1).all(1)
        W = torch.where(rejected[:, None, None], eye, W)
        rho = torch.where(rejected, ident, final)
    return ECCResult(W, rho, its, converged, failed, rejected)
