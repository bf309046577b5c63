"""Reference SSIM in plain PyTorch (valid Gaussian convolutions), differentiable by autograd:
the specification of the fused SSIM kernels."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_window_reference(win: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    k = torch.arange(win, dtype=torch.float64) - win // 2
    g = torch.exp(-0.5 * k**2 / sigma**2)
    return (g / g.sum()).to(dtype)


def ssim_reference(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win: int = 11, sigma: float = 1.5,
                   K1: float = 0.01, K2: float = 0.03, return_map: bool = False):
    """Per-image SSIM [B] of [B, C, H, W] images: Gaussian moments over each win x win window
    that lies inside the image, variances clamped at 0, the map averaged over pixels and
    channels."""
    B, C, H, W = x.shape
    g = gaussian_window_reference(win, sigma, x.dtype).to(x.device)
    gh, gv = g.view(1, 1, 1, win).expand(C, 1, 1, win), g.view(1, 1, win, 1).expand(C, 1, win, 1)
    blur = lambda t: F.conv2d(F.conv2d(t, gh, groups=C), gv, groups=C)
    mx, my = blur(x), blur(y)
    vx = (blur(x * x) - mx * mx).clamp_min(0)
    vy = (blur(y * y) - my * my).clamp_min(0)
    vxy = blur(x * y) - mx * my
    C1, C2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * mx * my + C1) * (2 * vxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
    score = s.mean((1, 2, 3))
    return (score, s) if return_map else score


__all__ = ["ssim_reference", "gaussian_window_reference"]
