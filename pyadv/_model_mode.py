"""Putting a user's model in eval mode for an attack or FI, and giving it back as it was."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with parameters frozen inside the block; restores each module's own
    training flag and each parameter's requires_grad afterwards, even on error.

    Per module, because a model may mix modes on purpose (say, a BatchNorm kept in train);
    freezing spares the backward pass the parameter gradients nobody asked for.
    """
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, rg in grads:
            p.requires_grad_(rg)
