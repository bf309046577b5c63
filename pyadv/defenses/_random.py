"""The seeded generator a random defense draws from: the same seed, the same sequence of draws;
kept on the CPU so that every device draws the same numbers."""
from __future__ import annotations

import torch


class Seeded:
    """Mixin: ``self._gen`` seeded from ``seed``; ``reseed(seed)`` starts the sequence again."""

    def _init_seed(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int | None = None) -> None:
        self._init_seed(self.seed if seed is None else seed)
