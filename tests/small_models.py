"""Small float64 models whose attacks can be written out by hand, shared by the attack tests."""
import torch
from torch import nn


class Linear(nn.Module):
    """logits = W x + c, float64, fixed seed."""

    def __init__(self, P=64, K=6):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = nn.Parameter(torch.randn(K, P, generator=g, dtype=torch.float64))
        self.c = nn.Parameter(torch.randn(K, generator=g, dtype=torch.float64) * 0.1)

    def forward(self, x):
        return x.flatten(1) @ self.W.T + self.c
