"""Expectation over transformation (Athalye et al. 2018)."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ._random import Seeded


class EoT(Seeded, nn.Module):
    """The model in expectation over a random transformation: ``samples`` draws t_s of
    ``transform(x, generator)`` (None: the identity, for a model that is random itself, such
    as RandomResizePad or SAP inside it), one batched forward of all of them, and the logits
    log E_s[softmax(model(t_s(x)))]. Their softmax is the expected prediction, which is what
    an attack's success check then uses; their gradient is the gradient of the expectation,
    E_s[grad p], the estimate of Athalye et al. Seeded (the transform's draws): the same seed,
    the same sequence."""

    def __init__(self, model: nn.Module, transform: Optional[Callable] = None, samples: int = 16, *, seed: int = 0):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"EoT samples must be an int >= 1, got {samples!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable (x, generator) -> x', got {type(transform).__name__}")
        self.model, self.transform, self.samples = model, transform, samples
        self._init_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S, N = self.samples, len(x)
        rep = x.repeat(S, *[1] * (x.dim() - 1))
        if self.transform is not None:
            rep = self.transform(rep, self._gen)
            if not isinstance(rep, torch.Tensor) or len(rep) != S * N:
                raise ValueError(f"transform must return one image per input ({S * N}), got "
                                 f"{tuple(rep.shape) if isinstance(rep, torch.Tensor) else type(rep).__name__}")
        logp = torch.log_softmax(self.model(rep).float(), 1).view(S, N, -1)
        return (torch.logsumexp(logp, 0) - torch.log(torch.tensor(float(S), device=x.device))).to(x.dtype)

    def extra_repr(self) -> str:
        return f"samples={self.samples}, seed={self.seed}"
