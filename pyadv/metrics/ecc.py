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
(coarse to fine) and ignore a border of ``margin`` template pixels (default: the pre-filter's
radius plus one), and a final warp that correlates worse than the identity is replaced by the
identity and flagged.

The margin is there because a warped image brings in content from outside the photo at its
edges (a constant border, in cv2.warpPerspective's default), and the Gaussian pre-filter smears
that border a few pixels into the picture. At the true warp only template pixels near the
template's own border map onto smeared image pixels, so ignoring them removes the bias whatever
the motion; on a 28 px image those pixels are a large share, and OpenCV, which keeps them,
returns warps more than 2 px off on 8 to 15 % of such pairs.

Each iteration's inner step (warp every template pixel into the image, sample the image and
its gradients, the Jacobian, and all the sums the Gauss-Newton step needs) is one pass of the
compiled ``ecc_moments`` op (CPU, CUDA); the n x n solves of each pair are batched torch ops
(``_ecc_loop``, the reference). Where the build has it (CPU; CUDA in a CUDA build) the whole
alignment of every pair (iterations, solves, safeguards) is one call of the compiled
``ecc_solve`` op instead: the same sums and the same rules, without a dozen small torch ops per
iteration, which took more time than the sums on small images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from .. import _C  # noqa: F401  (registers the ops)
from .._finite import finite_range

MOTIONS = {"translation": 2, "euclidean": 3, "affine": 6, "homography": 8}
MOTION_CODES = {"translation": 0, "euclidean": 1, "affine": 2, "homography": 3}  # OpenCV's MOTION_*
#: A converged pair whose correlation beats the identity's by this much is not re-measured at
#: its returned warp (one small Gauss-Newton step past the last measurement).
_SAFETY = 1e-3
#: Below this side length (pixels) the coarse-to-fine safeguard starts affine/homography fits
#: from a translation fit.
SMALL = 64


@dataclass
class ECCResult:
    warp: torch.Tensor        # [B, 3, 3], template -> image coordinates
    rho: torch.Tensor         # [B] correlation at the last measured warp (as OpenCV returns it;
                              #     the identity's for a rejected pair)
    iterations: torch.Tensor  # [B]
    converged: torch.Tensor   # [B] stopped by the eps rule
    failed: torch.Tensor      # [B] OpenCV would have raised (correlation being minimised, NaN)
    rejected: torch.Tensor    # [B] the safeguard replaced a warp worse than the identity


# OpenCV's getGaussianKernel for sigma <= 0: fixed tables for sizes up to 7 (GaussianBlur in
# findTransformECC asks for sigma 0), the sigma-from-size rule above.
_SMALL_GAUSS = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
                7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]}


def _gauss_kernel(size: int, dtype) -> torch.Tensor:
    if size in _SMALL_GAUSS:
        return torch.tensor(_SMALL_GAUSS[size], dtype=dtype)
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for sigma = 0
    k = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (k / sigma) ** 2)
    return (g / g.sum()).to(dtype)


def _filter(img: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    """Separable correlation with OpenCV's default border (BORDER_REFLECT_101), as sums of
    shifted slices (for these few-tap kernels several times faster than conv2d on CPU)."""
    px, py = len(kx) // 2, len(ky) // 2
    H, W = img.shape[-2:]
    x = F.pad(img, (px, px, 0, 0), mode="reflect") if px else img
    x = sum(kx[i] * x[..., i:i + W] for i in range(len(kx)) if kx[i] != 0)
    x = F.pad(x, (0, 0, py, py), mode="reflect") if py else x
    return sum(ky[i] * x[..., i:i + H, :] for i in range(len(ky)) if ky[i] != 0)


def _luma(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    if x.shape[1] != 1:
        raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
    return x


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


class _Sums:
    """The centred quantities of one inner step, from the ``ecc_moments`` sums [b, K]."""

    def __init__(self, S: torch.Tensor, n: int):
        count = S[:, 0].clamp_min(1)
        mt, mi = S[:, 1] / count, S[:, 2] / count
        self.tnorm = (S[:, 3] - count * mt * mt).clamp_min(0).sqrt()
        self.inorm = (S[:, 4] - count * mi * mi).clamp_min(0).sqrt()
        self.corr = S[:, 5] - count * mt * mi
        self.rho = self.corr / (self.inorm * self.tnorm).clamp_min(1e-30)
        if n:
            sj = S[:, 6:6 + n]
            self.tp = S[:, 6 + n:6 + 2 * n] - mt[:, None] * sj   # J (T - mean T)
            self.ip = S[:, 6 + 2 * n:6 + 3 * n] - mi[:, None] * sj  # J (I - mean I)
            iu = torch.triu_indices(n, n)
            H = S.new_zeros(len(S), n, n)
            H[:, iu[0], iu[1]] = S[:, 6 + 3 * n:]
            self.hessian = H + H.triu(1).transpose(1, 2)


def _inverse(H: torch.Tensor) -> torch.Tensor:
    """Batched inverse by LU, as OpenCV's Mat::inv(); a singular Hessian (no texture, no valid
    pixel) gets the pseudo-inverse instead."""
    inv, info = torch.linalg.inv_ex(H)
    bad = (info != 0) | ~torch.isfinite(inv).flatten(1).all(1)
    fixable = bad & torch.isfinite(H).flatten(1).all(1)  # a non-finite Hessian stays NaN: that pair fails
    if bool(fixable.any()):
        inv = inv.clone()
        inv[fixable] = torch.linalg.pinv(H[fixable])
    return inv


def _moments(stack: torch.Tensor, T: torch.Tensor, W: torch.Tensor, motion: str, margin: int,
             ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    return torch.ops.pyadv.ecc_moments(stack, T, W, MOTION_CODES[motion], margin, ids)


@torch.library.register_fake("pyadv::ecc_moments")
def _ecc_moments_fake(img, tmpl, M, motion, margin, ids=None):
    n = (2, 3, 6, 8)[motion]
    return img.new_empty((M.shape[0], 6 + 3 * n + n * (n + 1) // 2), dtype=torch.float64)


def ecc_align(template: torch.Tensor, image: torch.Tensor, motion: str = "homography", *, iters: int = 50,
              eps: float = 1e-3, gauss_filt_size: int = 5, init: Optional[torch.Tensor] = None,
              safeguards: bool = True, margin: Optional[int] = None) -> ECCResult:
    """Aligns each image [B, C, H, W] onto its template (same shape; RGB aligns on luma).
    Returns the warps [B, 3, 3] (template -> image coordinates, the convention of
    ``warp_perspective`` and of cv2.findTransformECC), the correlations, iterations used and
    the flags described in the module docstring. ``margin``: template pixels this close to the
    border are left out of the correlation (None: the safeguard's choice, 0 on images of 64 px
    and more)."""
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {sorted(MOTIONS)}, got {motion!r}")
    if not isinstance(template, torch.Tensor) or not isinstance(image, torch.Tensor):
        raise TypeError("template and image must be tensors")
    if template.shape != image.shape or template.dim() != 4:
        raise ValueError(f"template and image must both be [B, C, H, W], got {tuple(template.shape)} and "
                         f"{tuple(image.shape)}")
    if gauss_filt_size < 0 or (gauss_filt_size and gauss_filt_size % 2 == 0):
        raise ValueError(f"gauss_filt_size must be 0 (no filter) or odd, got {gauss_filt_size}")
    if iters < 1 or not eps >= 0:
        raise ValueError(f"iters must be >= 1 and eps >= 0, got {iters} and {eps}")
    for name, t in (("template", template), ("image", image)):
        if not t.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point image batch, got {t.dtype}")
        if t.numel() and finite_range(t) is None:  # then which pair, for the message
            bad = ~torch.isfinite(t).flatten(1).all(1)
            raise ValueError(f"{name} holds NaN or Inf (pair {int(bad.nonzero()[0])})")
    small = min(template.shape[-2:]) < SMALL
    if margin is None:
        margin = gauss_filt_size // 2 + 1 if safeguards and small else 0
    if margin < 0 or 2 * margin >= min(template.shape[-2:]):
        raise ValueError(f"margin must be >= 0 and leave pixels inside, got {margin} for "
                         f"{tuple(template.shape[-2:])} images")
    T, stack = _prepare(template, image, gauss_filt_size)
    if safeguards and init is None and motion in ("affine", "homography") and small:
        # Coarse to fine in the motion model on small images: a translation first, then the full
        # motion from it. There the 8-parameter fit from the identity runs off on a few percent of
        # pairs (OpenCV too); from the translation it does far less often. Larger images follow
        # OpenCV's path exactly.
        if _solve_op_on(T.device):  # both fits in one call, the identity measured once
            return _ecc(T, stack, motion, iters, eps, None, safeguards, margin, coarse=True)
        init = _ecc(T, stack, "translation", iters, eps, None, False, margin).warp
    return _ecc(T, stack, motion, iters, eps, init, safeguards, margin)


def _prepare(template: torch.Tensor, image: torch.Tensor, gauss_filt_size: int):
    """The template [B, H, W] and the image with its gradients [B, 3, H, W], pre-filtered as
    OpenCV does, in float32 as OpenCV works (the op's sums and the warps are float64)."""
    dtype = torch.float32
    T, I = _luma(template.to(dtype)), _luma(image.to(dtype))
    k = (_gauss_kernel(gauss_filt_size, torch.float64) if gauss_filt_size > 1
         else torch.ones(1, dtype=torch.float64))
    if T.device.type == "cpu":
        return torch.ops.pyadv.ecc_prefilter(T[:, 0], I[:, 0], k)
    return _prefilter_torch(T, I, k)


def _prefilter_torch(T: torch.Tensor, I: torch.Tensor, k: torch.Tensor):
    """The torch composition of the pre-filtering (used on GPUs; the reference of the CPU op)."""
    B = T.shape[0]
    k = k.to(T.dtype).to(T.device)
    both = torch.cat([T, I], 1)  # filtered in one pass
    if len(k) > 1:
        both = _filter(both.reshape(2 * B, 1, *both.shape[2:]), k, k).reshape(both.shape)
    T, I = both[:, :1], both[:, 1:]
    # Central differences with OpenCV's reflect-101 border, which makes them 0 on the edges.
    gxI = F.pad(0.5 * (I[..., 2:] - I[..., :-2]), (1, 1, 0, 0))
    gyI = F.pad(0.5 * (I[..., 2:, :] - I[..., :-2, :]), (0, 0, 1, 1))
    return T[:, 0].contiguous(), torch.cat([I, gxI, gyI], 1).contiguous()


@torch.library.register_fake("pyadv::ecc_prefilter")
def _ecc_prefilter_fake(tmpl, img, kernel):
    B, H, W = tmpl.shape
    return tmpl.new_empty((B, H, W)), tmpl.new_empty((B, 3, H, W))


def _solve_op_on(device: torch.device) -> bool:
    """Whether this build has the ecc_solve op for the device (CPU always; CUDA when built with it)."""
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device.type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key("pyadv::ecc_solve", key)


def _ecc(T, stack, motion, iters, eps, init, safeguards, margin, coarse: bool = False) -> ECCResult:
    """The alignment from ``init`` (None: the identity) by the compiled op where the build has
    one for the device, else by the torch loop. ``coarse`` (from the identity, compiled op
    only): a translation fit first, then the motion from it, the identity's correlation taken
    from the first fit's first step instead of measured again."""
    if not _solve_op_on(T.device):
        if coarse:
            raise ValueError("coarse needs the compiled ecc_solve op on this device")
        return _ecc_loop(T, stack, motion, iters, eps, init, safeguards, margin)
    B = T.shape[0]
    W0 = (torch.eye(3, dtype=torch.float64, device=T.device).expand(B, 3, 3) if init is None
          else torch.as_tensor(init, dtype=torch.float64, device=T.device).expand(B, 3, 3)).contiguous()
    return ECCResult(*torch.ops.pyadv.ecc_solve(stack, T, W0, MOTION_CODES[motion], margin, iters, float(eps),
                                                safeguards, init is None, coarse))


@torch.library.register_fake("pyadv::ecc_solve")
def _ecc_solve_fake(img, tmpl, M, motion, margin, iters, eps, safeguards, from_identity, coarse=False):
    B = M.shape[0]
    f = img.new_empty((B,), dtype=torch.bool)
    return (img.new_empty((B, 3, 3), dtype=torch.float64), img.new_empty((B,), dtype=torch.float64),
            img.new_empty((B,), dtype=torch.long), f, f.new_empty((B,)), f.new_empty((B,)))


def _ecc_loop(T, stack, motion, iters, eps, init, safeguards, margin) -> ECCResult:
    """The alignment as batched torch ops around ``ecc_moments``, iteration by iteration (the
    reference of the ``ecc_solve`` op, which runs it per pair in one call on the CPU)."""
    dtype, dev = torch.float64, T.device
    B, n = T.shape[0], MOTIONS[motion]
    W = (torch.eye(3, dtype=dtype, device=dev).expand(B, 3, 3).clone() if init is None
         else torch.as_tensor(init, dtype=dtype, device=dev).expand(B, 3, 3).clone().contiguous())
    rho = torch.full((B,), -1.0, dtype=dtype, device=dev)
    last = torch.full((B,), -eps, dtype=dtype, device=dev)
    active = torch.ones(B, dtype=torch.bool, device=dev)
    failed = torch.zeros(B, dtype=torch.bool, device=dev)
    its = torch.zeros(B, dtype=torch.long, device=dev)
    first_rho = None  # every pair's correlation at its initial warp
    for _ in range(iters):
        idx = (active & ((rho - last).abs() >= eps)).nonzero().flatten()
        if len(idx) == 0:
            break
        w = W[idx]
        # The op reads the active pairs in place (ids): no copies of their images.
        s = _Sums(_moments(stack, T, w, motion, margin, None if len(idx) == B else idx), n)
        Hinv = _inverse(s.hessian)
        last[idx] = rho[idx]
        rho[idx] = s.rho
        if its.sum() == 0 and len(idx) == B:
            first_rho = s.rho.clone()
        iph = (Hinv @ s.ip[..., None])[..., 0]
        lam_n = s.inorm**2 - (s.ip * iph).sum(1)
        lam_d = s.corr - (s.tp * iph).sum(1)
        bad = ~(lam_d > 0) | torch.isnan(s.rho)
        lam = lam_n / torch.where(bad, torch.ones_like(lam_d), lam_d)
        # J (lam (T - mean T) - (I - mean I)), the projected error, from the same sums.
        dp = (Hinv @ (lam[:, None] * s.tp - s.ip)[..., None])[..., 0]
        new = _update(motion, w, dp)
        good = ~bad & torch.isfinite(new).flatten(1).all(1)
        W[idx[good]] = new[good]
        its[idx] += 1
        failed[idx[~good]] = True
        active[idx[~good]] = False
    converged = ~failed & ((rho - last).abs() < eps)
    rejected = torch.zeros(B, dtype=torch.bool, device=dev)
    if safeguards:
        eye = torch.eye(3, dtype=dtype, device=dev).expand(B, 3, 3).contiguous()
        finite = torch.isfinite(W).flatten(1).all(1)
        # Started from the identity, the first iteration measured the identity's correlation.
        ident = (first_rho if init is None and first_rho is not None
                 else _Sums(_moments(stack, T, eye, "translation", margin), 0).rho)
        # The returned warp is one update past the last measured correlation. A converged pair
        # clearly above the identity stays above it after that small step; the others are
        # measured at the returned warp.
        check = (~converged | (rho < ident + _SAFETY) | ~finite).nonzero().flatten()
        final = rho.clone()
        if len(check):
            Wc = torch.where(finite[check, None, None], W[check], eye[check])
            final[check] = _Sums(_moments(stack, T, Wc.contiguous(), "translation", margin,
                                          None if len(check) == B else check), 0).rho
        rejected = ~(final >= ident) | ~finite
        W = torch.where(rejected[:, None, None], eye, W)
        rho = torch.where(rejected, ident, rho)
    return ECCResult(W, rho, its, converged, failed, rejected)
