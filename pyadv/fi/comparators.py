"""The Euclidean sensitivity measures paper 000 contrasts FI with, per pixel.

Both change when the perturbation is rescaled (omega -> c omega), which FI does not: that
invariance is the point of measuring on the perturbation manifold.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import ops
from .._model_mode import frozen_eval
from ._inputs import check_images, objective_classes
from .jacobian import make_plan, stream
from .pixel import num_classes


def _per_pixel(model: nn.Module, x: torch.Tensor, fill, n_slots, *, sub_batch, memory_budget, select=None,
               prepare=None) -> torch.Tensor:
    """Shared frame of the comparators: checks, eval mode, streamed Jacobians; ``fill(sb, out)``
    writes a sub-batch's rows of the [N, P] result, which is returned shaped like x."""
    check_images(x)
    N = len(x)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    out = torch.zeros(N, x[0].numel(), dtype=dtype, device=x.device)
    with frozen_eval(model):
        K = num_classes(model, x) if N else 0
        if prepare is not None:
            select = prepare(N, K)
        if N:
            plan = make_plan(model, x, n_slots(K), sub_batch=sub_batch, memory_budget=memory_budget)
            for sb in stream(model, x, plan, select=select):
                fill(sb, out, dtype)
    return out.view_as(x).to(x.dtype)


def jacobian_norm(model: nn.Module, x: torch.Tensor, *, sub_batch: Optional[int] = None,
                  memory_budget: Optional[int] = None) -> torch.Tensor:
    """Per pixel, the norm of the Jacobian of the probability vector with respect to that
    pixel, sqrt(sum_k (dP_k/dx_i)^2) (Novak et al.'s input-output Jacobian norm), shaped like x.

    Computed as sqrt(sum_k P_k^2 (d log P_k/dx_i)^2) through the FI accumulation with weights
    P_k^2."""

    def fill(sb, out, dtype):
        w = sb.probs.to(dtype) ** 2
        acc = ops.FIAccumulator(w, torch.zeros(len(w), dtype=torch.long, device=out.device), out.shape[1],
                                dtype=dtype)
        for m0, jac in sb.chunks:
            acc.add(jac.to(dtype), m0)
        out[sb.rows] = acc.den.sqrt()

    return _per_pixel(model, x, fill, lambda K: K, sub_batch=sub_batch, memory_budget=memory_budget)


def cook_influence(model: nn.Module, x: torch.Tensor, y, target=None, *, sub_batch: Optional[int] = None,
                   memory_budget: Optional[int] = None) -> torch.Tensor:
    """Cook's (1986) local influence of a pixel in the Euclidean perturbation space: eq. (1)
    with the metric G replaced by the identity, (df/dx_i)^2 for f = -log P(y) (or target), the
    squared slope of the influence graph. Shaped like x; one backward pass per image batch."""

    def prepare(N, K):
        _, t = objective_classes(y, target, N, K, x.device)
        return lambda probs, rows: t[rows, None]

    def fill(sb, out, dtype):
        for _, jac in sb.chunks:
            out[sb.rows] = jac[:, 0].to(dtype) ** 2

    return _per_pixel(model, x, fill, lambda K: 1, sub_batch=sub_batch, memory_budget=memory_budget,
                      prepare=prepare)
