"""Metrics: SSIM (scikit-image semantics, fused kernels, differentiable), perspective warp and
perturbation norms."""
from .norms import lp_norms
from .ssim import ssim, ssim_map
from .warp import warp_perspective

__all__ = ["ssim", "ssim_map", "lp_norms", "warp_perspective"]
