"""Metrics: SSIM (scikit-image semantics, fused kernels, differentiable), perspective warp, ECC
alignment, PASS and perturbation norms."""
from .ecc import ECCResult, ecc_align
from .norms import lp_norms
from .pass_score import pass_score
from .ssim import ssim, ssim_map
from .warp import warp_perspective

__all__ = ["ssim", "ssim_map", "lp_norms", "warp_perspective", "ecc_align", "ECCResult", "pass_score"]
