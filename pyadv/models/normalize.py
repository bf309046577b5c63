from typing import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Wraps a model so that it takes images in [0, 1]: forward(x) = model((x - mean) / std).

    Keeps normalisation inside the model, where attacks and FI expect it; mean and std are
    per channel (one value each for grey images)."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.numel() != std_t.numel() or mean_t.numel() == 0:
            raise ValueError(f"mean and std must have one value per channel, got {mean_t.numel()} and {std_t.numel()}")
        if not bool((std_t > 0).all()):
            raise ValueError(f"std must be > 0, got {std_t.tolist()}")
        self.model = model
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"x must be [N, {self.mean.shape[1]}, H, W], got {tuple(x.shape)}")
        return self.model((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))
