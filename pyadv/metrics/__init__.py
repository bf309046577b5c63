"""Metrics: SSIM (scikit-image semantics, fused kernels, differentiable) and perturbation norms."""
from .norms import lp_norms
from .ssim import ssim, ssim_map

__all__ = ["ssim", "ssim_map", "lp_norms"]
