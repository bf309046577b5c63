"""PASS, the perceptual adversarial similarity score (paper 001, eq. (1)-(4)):
PASS(x_adv, x) = SSIM(psi(x_adv, x), x), psi aligning x_adv onto x with the homography that
maximises the enhanced correlation coefficient (ECC)."""
from __future__ import annotations

from typing import Optional

import torch

from .ecc import ECCResult, ecc_align
from .ssim import ssim
from .warp import warp_perspective

__all__ = ["pass_score"]


def pass_score(x_adv: torch.Tensor, x: torch.Tensor, *, motion: str = "homography", integer: bool = False,
               iters: int = 50, eps: float = 1e-3, gauss_filt_size: int = 5, margin: Optional[int] = None,
               return_details: bool = False):
    """PASS per image [B] of x_adv against x ([B, C, H, W]; RGB pairs align on luma, SSIM
    averages the channels). A pair whose ECC did not converge (or failed, or whose warp the
    safeguard rejected) is scored with the identity warp and flagged in the details.

    ``integer=True`` takes images in [0, 255] and scores them rounded to integers with
    data_range 255, as paper 001 does; otherwise images are in [0, 1] (data_range 1).
    ``margin`` is ecc_align's (template border pixels left out of the alignment; None: its
    safeguard's choice). ``return_details`` also returns (fallback flags [B], the ECC result).
    """
    if x_adv.shape != x.shape or x.dim() != 4:
        raise ValueError(f"x_adv and x must both be [B, C, H, W], got {tuple(x_adv.shape)} and {tuple(x.shape)}")
    # Scored in the images' precision (float32 stays float32: SSIM's kernels are accurate to
    # ~1e-6 there); integer and other inputs in float64.
    work = x.dtype if x.dtype in (torch.float32, torch.float64) and x_adv.dtype == x.dtype else torch.float64
    if integer:
        x_adv, x = x_adv.round().clamp(0, 255).to(work), x.round().clamp(0, 255).to(work)
        scale = 255.0
    else:
        x_adv, x = x_adv.to(work), x.to(work)
        scale = 1.0
    r: ECCResult = ecc_align(x / scale if integer else x, x_adv / scale if integer else x_adv, motion, iters=iters,
                             eps=eps, gauss_filt_size=gauss_filt_size, margin=margin)
    fallback = ~r.converged | r.failed | r.rejected
    # An unchanged image needs no alignment (ECC would leave rounding-level residues in the warp).
    same = (x_adv == x).flatten(1).all(1)
    fallback = fallback & ~same
    eye = torch.eye(3, dtype=torch.float64, device=x.device).expand_as(r.warp)
    warps = torch.where((fallback | same)[:, None, None], eye, r.warp)
    aligned = warp_perspective(x_adv, warps)
    if integer:
        aligned = aligned.round()
    score = ssim(aligned, x, data_range=scale)
    return (score, fallback, r) if return_details else score
