"""Putting a user's model in eval mode for an attack or FI, and giving it back as it was."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
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


def predict_probs(model: nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Softmax probabilities [N, K] (float32) of a data set, ``batch`` images per forward, in eval
    mode with frozen parameters (given back as they were), no autograd. The model's output is
    checked to be [n, K] logits; an empty x still gives [0, K]."""
    from .fi._inputs import check_logits

    with frozen_eval(model), torch.inference_mode():
        chunks = [x[i:i + batch] for i in range(0, len(x), batch)] or [x.new_zeros(1, *x.shape[1:])]
        out = []
        for c in chunks:
            logits = model(c)
            check_logits(logits, len(c))
            out.append(logits.float().softmax(1))
    probs = torch.cat(out)
    return probs[:len(x)]
