"""Validation of the images, labels and model outputs that FI functions receive."""
from __future__ import annotations

import torch

from .._finite import finite_range

#: How far outside [0, 1] an image may stray (rounding of a normalise/denormalise round trip).
RANGE_TOL = 1e-4


def check_images(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"{name} must be an image batch [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {x.dtype}")
    if x.numel() == 0:
        return
    span = finite_range(x)
    if span is None:
        raise ValueError(f"{name} holds NaN or Inf")
    lo, hi = span
    if lo < -RANGE_TOL or hi > 1 + RANGE_TOL:
        raise ValueError(f"{name} must hold images in [0, 1] (normalisation belongs inside the model, see "
                         f"pyadv.models.Normalize); got values in [{lo:.4g}, {hi:.4g}]")


def as_labels(v, n: int, k: int, name: str, device) -> torch.Tensor:
    """An int, or an [n] integer tensor/sequence, of classes in [0, k)."""
    t = torch.as_tensor(v, device=device)
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,) or t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer class or [{n}] integer tensor, got shape {tuple(t.shape)} "
                         f"dtype {t.dtype}")
    if n and (int(t.min()) < 0 or int(t.max()) >= k):
        raise ValueError(f"{name} must hold classes in [0, {k}), got values in [{int(t.min())}, {int(t.max())}]")
    return t.long()


def check_target(target: torch.Tensor, y: torch.Tensor) -> None:
    same = (target == y).nonzero().flatten()
    if same.numel():
        i = int(same[0])
        raise ValueError(f"target equals the label for image {i} (class {int(y[i])}); a target names another "
                         "class (leave target=None for the objective -log P(y))")


def objective_classes(y, target, n: int, k: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, t): the labels and the objective's class per image, -log P(t) with t = target if given
    (it must differ from the label), else y (paper 000, eq. (5))."""
    y = as_labels(y, n, k, "y", device)
    if target is None:
        return y, y
    t = as_labels(target, n, k, "target", device)
    check_target(t, y)
    return y, t


def check_logits(logits: torch.Tensor, n: int) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != n:
        raise ValueError(f"the model must map [N, C, H, W] images to logits [N, K]; for N = {n} it returned "
                         f"{getattr(logits, 'shape', type(logits))}")
    if logits.shape[1] < 2:
        raise ValueError(f"the model must return at least 2 class logits, got {logits.shape[1]}")
