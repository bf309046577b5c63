"""Typed Python face of the compiled kernels (``torch.ops.pyadv``).

Argument checks happen in the C++ ops, so they apply however an op is called (directly,
through ``torch.ops.pyadv`` or under ``torch.compile``); errors name the argument.
Non-contiguous inputs are accepted and copied; in-place accumulators must be contiguous.
"""
from __future__ import annotations

import torch

from . import _C  # noqa: F401  (registers the ops)

__all__ = ["pixel_fi", "fi_accumulate", "fi_finish", "fi_group_accumulate", "fi_group_finish", "FIAccumulator",
           "SA_DNN_EPS", "SA_DNN_RANK_TOL"]

#: The guards of the authors' public code (shu-hai/SA_DNN), for ``eps`` and ``rank_tol``.
SA_DNN_EPS = 1e-3
SA_DNN_RANK_TOL = 1e-3


def pixel_fi(jac: torch.Tensor, probs: torch.Tensor, target: torch.Tensor, *, eps: float = 0.0,
             rank_tol: float = 0.0) -> torch.Tensor:
    """Per-pixel First-order Influence (paper 000, eq. (1) with omega = delta x_i).

    Args:
        jac: [B, K, P] gradients of the K log-probabilities with respect to the P input
            components (RGB channel components count as separate pixels). float32 or float64.
        probs: [B, K] class probabilities in [0, 1]; cast to ``jac``'s dtype.
        target: [B] integer class of the objective -log P(target).
        eps: guard of the authors' code; 0 is the exact formula. With eps > 0 the metric uses
            P_k J_k / (sqrt(P_k) + eps) and the numerator P_t J_t / (P_t + eps).
        rank_tol: FI is 0 where sqrt(G) <= rank_tol (their singular-value cut-off).

    Returns:
        [B, P] FI[b, i] = J[b, t, i]^2 / sum_k P[b, k] J[b, k, i]^2, and 0 where that
        denominator is 0 (or below the cut-off).

    Raises ValueError for NaN or Inf in ``jac`` or ``probs``, bad shapes, devices or targets,
    TypeError for non-floating ``jac``/``probs`` or non-integer ``target``.
    """
    return torch.ops.pyadv.pixel_fi(jac, probs, target, float(eps), float(rank_tol))


def fi_accumulate(jac: torch.Tensor, probs: torch.Tensor, target: torch.Tensor, k_offset: int,
                  num: torch.Tensor, den: torch.Tensor, *, eps: float = 0.0) -> None:
    """Adds the classes [k_offset, k_offset + Kc) of a chunk ``jac`` [B, Kc, P] to ``num``
    (the scaled target gradient) and ``den`` (the metric G), both [B, P], in place.

    ``probs`` [B, K] and ``target`` [B] are the full ones. Streaming the Jacobian this way needs
    O(B*P) memory instead of O(B*K*P); finish with :func:`fi_finish`.
    """
    torch.ops.pyadv.fi_accumulate(jac, probs, target, int(k_offset), float(eps), num, den)


def fi_finish(num: torch.Tensor, den: torch.Tensor, *, rank_tol: float = 0.0) -> torch.Tensor:
    """FI [B, P] from accumulators filled by :func:`fi_accumulate`."""
    return torch.ops.pyadv.fi_finish(num, den, float(rank_tol))


def fi_group_accumulate(jac: torch.Tensor, probs: torch.Tensor, target: torch.Tensor, k_offset: int,
                        num: torch.Tensor, den: torch.Tensor, *, eps: float = 0.0) -> None:
    """Grouped FI, where the C <= 4 channel components of a pixel form one C-dimensional
    perturbation: adds classes [k_offset, k_offset + Kc) of ``jac`` [B, Kc, C, HW] to ``num``
    [B, C, HW] (the scaled target gradient) and ``den`` [B, C(C+1)/2, HW] (the packed C x C
    metric, upper triangle row by row), in place."""
    torch.ops.pyadv.fi_group_accumulate(jac, probs, target, int(k_offset), float(eps), num, den)


def fi_group_finish(num: torch.Tensor, den: torch.Tensor, *, rank_tol: float = 0.0) -> torch.Tensor:
    """Grouped FI [B, HW] = g^T G^+ g per pixel from :func:`fi_group_accumulate`'s accumulators.

    The pseudo-inverse keeps the eigenvalues of G above max(rank_tol^2, C * machine-eps *
    largest eigenvalue), as ``torch.linalg.pinv`` does by default (rank_tol = 0)."""
    return torch.ops.pyadv.fi_group_finish(num, den, float(rank_tol))


class FIAccumulator:
    """Streams the Jacobian class chunk by class chunk into per-pixel FI.

    >>> acc = FIAccumulator(probs, target, P)
    >>> for k0 in range(0, K, 4):
    ...     acc.add(jac_of_classes(k0, k0 + 4))   # [B, <=4, P]
    >>> fi = acc.result()

    With ``group=C`` (1 to 4) the chunks are [B, Kc, C, HW] and the C channel components of a
    pixel form one perturbation (:func:`fi_group_accumulate`); the result is [B, HW].
    """

    def __init__(self, probs: torch.Tensor, target: torch.Tensor, num_pixels: int, *, eps: float = 0.0,
                 rank_tol: float = 0.0, dtype: torch.dtype | None = None, group: int | None = None):
        if not isinstance(num_pixels, int) or num_pixels < 0:
            raise ValueError(f"num_pixels must be an int >= 0, got {num_pixels!r}")
        if group is not None and (not isinstance(group, int) or not 1 <= group <= 4):
            raise ValueError(f"group must be None or a channel count 1 to 4, got {group!r}")
        dtype = dtype or (probs.dtype if probs.dtype in (torch.float32, torch.float64) else torch.float32)
        self.probs, self.target = probs, target
        self.eps, self.rank_tol = float(eps), float(rank_tol)
        self.group = group
        B = probs.shape[0]
        if group is None:
            self.num = torch.zeros(B, num_pixels, dtype=dtype, device=probs.device)
            self.den = torch.zeros_like(self.num)
        else:
            self.num = torch.zeros(B, group, num_pixels, dtype=dtype, device=probs.device)
            self.den = torch.zeros(B, group * (group + 1) // 2, num_pixels, dtype=dtype, device=probs.device)
        self.next_class = 0

    @property
    def num_classes(self) -> int:
        return self.probs.shape[1]

    def add(self, jac_chunk: torch.Tensor, k_offset: int | None = None) -> None:
        """Adds a chunk [B, Kc, P]; by default it follows the previous chunk."""
        k0 = self.next_class if k_offset is None else k_offset
        if self.group is None:
            fi_accumulate(jac_chunk, self.probs, self.target, k0, self.num, self.den, eps=self.eps)
        else:
            fi_group_accumulate(jac_chunk, self.probs, self.target, k0, self.num, self.den, eps=self.eps)
        self.next_class = k0 + jac_chunk.shape[1]

    def result(self) -> torch.Tensor:
        if self.group is None:
            return fi_finish(self.num, self.den, rank_tol=self.rank_tol)
        return fi_group_finish(self.num, self.den, rank_tol=self.rank_tol)


def _same_device(jac, **others):
    # The dispatcher routes a call with one meta tensor to these fake kernels, so the device
    # check of the real kernels is repeated here.
    for name, t in others.items():
        if t.device != jac.device:
            raise ValueError(f"{name} is on {t.device} but jac is on {jac.device}; all tensors must be on one device")


@torch.library.register_fake("pyadv::pixel_fi")
def _pixel_fi_fake(jac, probs, target, eps=0.0, rank_tol=0.0):
    torch._check(jac.dim() == 3, lambda: "jac must have shape [B, K, P]")
    _same_device(jac, probs=probs, target=target)
    return jac.new_empty((jac.shape[0], jac.shape[2]))


@torch.library.register_fake("pyadv::fi_accumulate")
def _fi_accumulate_fake(jac, probs, target, k_offset, eps, num, den):
    _same_device(jac, probs=probs, target=target, num=num, den=den)
    return None


@torch.library.register_fake("pyadv::fi_finish")
def _fi_finish_fake(num, den, rank_tol=0.0):
    return torch.empty_like(num)


@torch.library.register_fake("pyadv::fi_group_accumulate")
def _fi_group_accumulate_fake(jac, probs, target, k_offset, eps, num, den):
    _same_device(jac, probs=probs, target=target, num=num, den=den)
    return None


@torch.library.register_fake("pyadv::fi_group_finish")
def _fi_group_finish_fake(num, den, rank_tol=0.0):
    return num.new_empty((num.shape[0], num.shape[2]))
