from typing import Sequence

import torch
import torch.fx
from torch import nn


@torch.fx.wrap
def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel, x [N, C, H, W], mean and std [1, C, 1, 1]. One node in a
    torch.fx graph (the shape check cannot be traced), so that a wrapped model still traces:
    the runner folds its batch norm and follows it incrementally (pyadv.attacks._incremental)."""
    if x.dim() != 4 or x.shape[1] != mean.shape[1]:
        raise ValueError(f"x must be [N, {mean.shape[1]}, H, W], got {tuple(x.shape)}")
    return (x - mean.to(x.dtype)) / std.to(x.dtype)


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
        return self.model(normalize(x, self.mean, self.std))
