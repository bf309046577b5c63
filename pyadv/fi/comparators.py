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


def jacobian_norm(model: nn.Module, x: torch.Tensor, *, sub_batch: Optional[int] = None,
                  memory_budget: Optional[int] = None) -> torch.Tensor:
    """Per pixel, the norm of the Jacobian of the probability vector with respect to that
    pixel, sqrt(sum_k (dP_k/dx_i)^2) (Novak et al.'s input-output Jacobian norm), shaped like x.

    Computed as sqrt(sum_k P_k^2 (d log P_k/dx_i)^2) through the FI accumulation with weights
    P_k^2."""
    check_images(x)
    N = len(x)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    out = torch.zeros(N, x[0].numel(), dtype=dtype, device=x.device)
    with frozen_eval(model):
        K = num_classes(model, x) if N else 0
        if N:
            plan = make_plan(model, x, K, sub_batch=sub_batch, memory_budget=memory_budget)
            for sb in stream(model, x, plan):
                w = sb.probs.to(dtype) ** 2
                acc = ops.FIAccumulator(w, torch.zeros(len(w), dtype=torch.long, device=x.device), out.shape[1],
                                        dtype=dtype)
                for m0, jac in sb.chunks:
                    acc.add(jac.to(dtype), m0)
                out[sb.rows] = acc.den.sqrt()
    return out.view_as(x).to(x.dtype)


def cook_influence(model: nn.Module, x: torch.Tensor, y, target=None, *, sub_batch: Optional[int] = None,
                   memory_budget: Optional[int] = None) -> torch.Tensor:
    """Cook's (1986) local influence of a pixel in the Euclidean perturbation space: eq. (1)
    with the metric G replaced by the identity, (df/dx_i)^2 for f = -log P(y) (or target), the
    squared slope of the influence graph. Shaped like x; one backward pass per image batch."""
    check_images(x)
    N = len(x)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    out = torch.zeros(N, x[0].numel(), dtype=dtype, device=x.device)
    with frozen_eval(model):
        K = num_classes(model, x) if N else 0
        y, t = objective_classes(y, target, N, K, x.device)
        if N:
            plan = make_plan(model, x, 1, sub_batch=sub_batch, memory_budget=memory_budget)
            for sb in stream(model, x, plan, select=lambda probs, rows: t[rows, None]):
                for _, jac in sb.chunks:
                    out[sb.rows] = jac[:, 0].to(dtype) ** 2
    return out.view_as(x).to(x.dtype)
