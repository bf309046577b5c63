"""Per-image losses on logits that several attacks share (one value per image)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """-log P(cls), in float32 at least."""
    return F.cross_entropy(logits if logits.dtype == torch.float64 else logits.float(), cls, reduction="none")


def cw_margin(logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin of class cls: max_{j != cls} Z_j - Z_cls (higher: cls losing)."""
    z = logits.float()
    other = z.masked_fill(F.one_hot(cls, z.shape[1]).bool(), -math.inf).amax(1)
    return other - z.gather(1, cls[:, None])[:, 0]


def dlr(logits: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Difference of logits ratio (Croce and Hein 2020), as a loss to maximise: untargeted
    -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3); targeted -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    z = logits.float()
    s = z.sort(1, descending=True).values
    if target is None:
        return cw_margin(z, y) / (s[:, 0] - s[:, 2] + 1e-12)  # -(z_y - max_{i != y} z_i)
    zy, zt = z.gather(1, y[:, None])[:, 0], z.gather(1, target[:, None])[:, 0]
    return -(zy - zt) / (s[:, 0] - (s[:, 2] + s[:, 3]) / 2 + 1e-12)
