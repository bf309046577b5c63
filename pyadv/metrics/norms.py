"""Perturbation norms of adversarial images (paper 001 reports L0, L2 per pixel and L-inf)."""
from __future__ import annotations

import torch

__all__ = ["lp_norms"]


def lp_norms(x_adv: torch.Tensor, x: torch.Tensor, *, eps: float = 0.0) -> dict[str, torch.Tensor]:
    """Per image [B]: ``l0`` (pixels changed by more than eps; a pixel counts once whatever
    channels changed), ``l0_components`` (changed channel components), ``l2`` (over all
    components), ``l2_per_pixel`` (l2 / sqrt(C*H*W), paper 001's per-pixel figure) and ``linf``.
    Inputs [B, C, H, W] (or [C, H, W])."""
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv and x must have the same shape, got {tuple(x_adv.shape)} and {tuple(x.shape)}")
    if x.dim() == 3:
        x_adv, x = x_adv[None], x[None]
    if x.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W] or [C, H, W], got {tuple(x.shape)}")
    d = (x_adv - x).flatten(2)  # [B, C, HW]
    if d.dtype not in (torch.float32, torch.float64):
        d = d.double()
    B, C, P = d.shape
    # |d|, its maximum and the comparison with 0 are exact in d's own precision; only the L2
    # sum is taken in float64 (vector_norm's dtype), so no float64 copy of d is made.
    a = d.abs()
    changed = a > eps if eps == 0 or d.dtype == torch.float64 else a.double() > eps
    none = torch.zeros(B, dtype=torch.float64, device=d.device)  # no pixels: no perturbation
    l2 = torch.linalg.vector_norm(d.flatten(1), dim=1, dtype=torch.float64) if P else none
    components = changed.sum((1, 2))
    return {
        "l0": components if C == 1 else changed.any(1).sum(1),
        "l0_components": components,
        "l2": l2,
        "l2_per_pixel": l2 / (C * P) ** 0.5,
        "linf": a.amax((1, 2)).double() if P else none,
    }
