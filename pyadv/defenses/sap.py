"""Stochastic activation pruning (Dhillon et al. 2018), as Athalye et al. (2018) describe it."""
from __future__ import annotations

import torch
from torch import nn

from ._random import Seeded


class StochasticActivationPruning(Seeded, nn.Module):
    """Wraps a model: the output h of each of its ``nn.ReLU`` modules (per image, M values) is
    pruned at random, r = ceil(fraction M) draws with replacement from the multinomial
    p_j = |h_j| / sum |h|; what is drawn is kept and scaled by 1 / (1 - (1 - p_j)^r) (which
    keeps each activation's expectation), the rest is zeroed. Active in eval mode too: it is a
    test-time defense. Seeded: the same seed, the same sequence of prunings."""

    def __init__(self, model: nn.Module, fraction: float = 1.0, *, seed: int = 0):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not fraction > 0:
            raise ValueError(f"fraction must be a number > 0 (draws per activation), got {fraction!r}")
        self.relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        if not self.relus:
            raise ValueError("the model has no nn.ReLU module whose outputs SAP could prune "
                             "(functional relu calls cannot be hooked)")
        self.model, self.fraction = model, float(fraction)
        self._init_seed(seed)

    def _prune(self, module, inputs, h):
        flat = h.flatten(1)
        N, M = flat.shape
        r = max(1, int(-(-self.fraction * M // 1)))
        mass = flat.detach().abs().double()
        total = mass.sum(1, keepdim=True)
        p = mass / total.clamp_min(1e-300)
        # r draws with replacement per image by inverse CDF (searchsorted: r log M, where
        # torch.multinomial with replacement costs far more at r ~ M ~ 10^4)
        cdf = p.cumsum(1).cpu()
        cdf[:, -1] = 1.0
        u = torch.rand(N, r, generator=self._gen, dtype=torch.float64)
        draws = torch.searchsorted(cdf, u).clamp_max_(M - 1)
        keep = torch.zeros(N, M, dtype=torch.bool).scatter_(1, draws, True)
        keep &= (total > 0).cpu()
        keep = keep.to(h.device)
        scale = (1 / (1 - (1 - p).pow(r)).clamp_min(1e-300)).to(flat.dtype)
        return torch.where(keep, flat * scale, torch.zeros_like(flat)).view_as(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hooks = [m.register_forward_hook(self._prune) for m in self.relus]
        try:
            return self.model(x)
        finally:
            for h in hooks:
                h.remove()

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}, seed={self.seed}, relus={len(self.relus)}"
