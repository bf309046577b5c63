"""First-order Influence on models (paper 000, §2.1, eq. (1) and (5)).

The per-pixel FI of pixel i under the objective f = -log P(t) is
FI_i = (d log P_t / d x_i)^2 / sum_k P_k (d log P_k / d x_i)^2: the log-probability
gradients are taken for the whole batch, one backward pass per class, and streamed class by
class into the compiled reduction, so memory stays O(B*P).
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from ._model_mode import frozen_eval

__all__ = ["pixel_fi", "log_prob_jacobian", "CONVENTIONS"]

#: "exact": eq. (1) as printed. "sa_dnn": the guards of the authors' code (eps = rank_tol = 1e-3).
CONVENTIONS = {"exact": (0.0, 0.0), "sa_dnn": (ops.SA_DNN_EPS, ops.SA_DNN_RANK_TOL)}


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be an image batch [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point, got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x holds NaN or Inf")


def _labels(v, n: int, k: int, name: str, device) -> torch.Tensor:
    t = torch.as_tensor(v, device=device)
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,) or t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer class index or [N] integer tensor, got {tuple(t.shape)} {t.dtype}")
    if n and (int(t.min()) < 0 or int(t.max()) >= k):
        raise ValueError(f"{name} must hold classes in [0, {k}), got {t.tolist()}")
    return t.long()


def _jacobian_chunks(model: nn.Module, x: torch.Tensor, chunk: int
                     ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yields (k0, J[:, k0:k0+c, :], probs) with one backward pass per class over the batch.

    Samples in a batch are independent in eval mode, so the gradient of sum_b log P_k(x_b)
    with respect to x is the per-image gradient of each."""
    xg = x.detach().clone().requires_grad_(True)
    logp = F.log_softmax(model(xg), dim=1)
    probs = logp.detach().exp()
    K = logp.shape[1]
    for k0 in range(0, K, chunk):
        cols = []
        for k in range(k0, min(K, k0 + chunk)):
            (g,) = torch.autograd.grad(logp[:, k].sum(), xg, retain_graph=k < K - 1)
            cols.append(g.reshape(len(x), -1))
        yield k0, torch.stack(cols, 1), probs


def log_prob_jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (J [N, K, P], probs [N, K]): gradients of the K log-probabilities with respect
    to the N images' P = C*H*W components. O(N*K*P) memory; :func:`pixel_fi` streams instead."""
    _check_images(x)
    with frozen_eval(model):
        chunks = list(_jacobian_chunks(model, x, chunk=1 << 30))
    (_, jac, probs), = chunks
    return jac, probs


def pixel_fi(model: nn.Module, x: torch.Tensor, y, target=None, *, convention: str = "exact",
             chunk_classes: int = 4) -> torch.Tensor:
    """Per-pixel FI maps shaped like x (channel components are separate pixels, as in the paper).

    Objective per eq. (5): -log P(y) when ``target`` is None, else -log P(target).
    ``convention``: "exact" (eq. (1)) or "sa_dnn" (the authors' eps = 1e-3 guards and 1e-3
    singular-value cut-off, which zero the pixels whose gradients are all near 0).
    The model runs in eval mode with frozen parameters; its modes are restored afterwards.
    """
    _check_images(x)
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}")
    if not isinstance(chunk_classes, int) or chunk_classes < 1:
        raise ValueError(f"chunk_classes must be an int >= 1, got {chunk_classes!r}")
    eps, rank_tol = CONVENTIONS[convention]
    n, P = x.shape[0], x[0].numel()
    with frozen_eval(model):
        acc = None
        for k0, jac, probs in _jacobian_chunks(model, x, chunk_classes):
            if acc is None:
                K = probs.shape[1]
                t = _labels(y if target is None else target, n, K, "y" if target is None else "target", x.device)
                acc = ops.FIAccumulator(probs.to(x.dtype), t, P, eps=eps, rank_tol=rank_tol,
                                        dtype=x.dtype if x.dtype == torch.float64 else torch.float32)
            acc.add(jac.to(acc.num.dtype), k0)
    return acc.result().view_as(x).to(x.dtype)
