"""Thermometer encoding (Buckman et al. 2018), one of the defenses of Athalye et al. (2018)."""
from __future__ import annotations

import torch
from torch import nn


class Thermometer(nn.Module):
    """Each value x of [N, C, H, W] becomes l values tau(x)_k = 1 if x > k / l else 0, k = 1..l
    (the notes' example: tau(0.66) = 1111110000 at l = 10), channel-major: [N, C l, H, W].

    Piecewise constant, so its gradient is zero almost everywhere (shattered gradients).
    ``relaxation`` is the continuous stand-in for BPDA: g(x)_k = clamp(l x - k + 1, 0, 1),
    0 up to (k - 1) / l, 1 from k / l on and linear between, so that tau = floor(g) (the notes'
    tau = floor(tau-hat)) everywhere but at the thresholds themselves. The notes write
    tau-hat(x)_k = min(max(x - k/l, 0), 1); without the factor l that rises over a whole unit
    instead of one level and its floor is 0 for every x < 1, so the scaled and shifted form is
    used. BPDA picks ``relaxation`` as this layer's default stand-in."""

    def __init__(self, levels: int = 16):
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an int >= 2, got {levels!r}")
        self.levels = levels
        self.register_buffer("k", torch.arange(1, levels + 1, dtype=torch.float32), persistent=False)

    def _levels(self, x: torch.Tensor) -> torch.Tensor:
        N, C = x.shape[:2]
        return x[:, :, None], self.k.to(x.dtype).view(1, 1, -1, *[1] * (x.dim() - 2)), (N, C)

    def _merge(self, t: torch.Tensor, N: int, C: int) -> torch.Tensor:
        return t.reshape(N, C * self.levels, *t.shape[3:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, k, (N, C) = self._levels(x)
        return self._merge((v > k / self.levels).to(x.dtype), N, C)

    def relaxation(self, x: torch.Tensor) -> torch.Tensor:
        v, k, (N, C) = self._levels(x)
        return self._merge((self.levels * v - k + 1).clamp(0, 1), N, C)

    def bpda_approximation(self, x: torch.Tensor) -> torch.Tensor:
        return self.relaxation(x)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"
