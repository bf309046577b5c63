"""Typed Python face of the compiled kernels (``torch.ops.pyadv``).

Argument checks happen in the C++ ops, so they apply however an op is called (directly,
through ``torch.ops.pyadv`` or under ``torch.compile``); errors name the argument.
Non-contiguous inputs are accepted and copied; in-place accumulators must be contiguous.

On CUDA tensors the checks of input *values* are off by default, since each reads values back
to the host (a stream synchronisation per call, and no CUDA-graph capture): probs in [0, 1] and
NaN in FI inputs, target and index ranges (FI targets, swarm ids, DE best members,
sparse_perturb pixels, ECC ids), lo <= hi bounds, finite SSIM images and warp matrices. An
out-of-range index then gives undefined results (or an illegal-address error) and NaN input
NaN output. ``set_check_inputs(True)`` or ``with checked_inputs():`` turns them on: every bad
input the CPU path rejects is then rejected on CUDA with the same message. Shapes, dtypes and
devices are always checked, and CPU tensors always get every check.
"""
from __future__ import annotations

import contextlib

import torch

from . import _C  # noqa: F401  (registers the ops)

__all__ = ["pixel_fi", "fi_accumulate", "fi_finish", "fi_group_accumulate", "fi_group_finish", "FIAccumulator",
           "pso_step", "swarm_best", "de_trial", "de_select", "sparse_perturb", "pixel_replace",
           "sparse_conv_stage",
           "SA_DNN_EPS", "SA_DNN_RANK_TOL", "set_check_inputs", "checked_inputs"]

def set_check_inputs(enabled: bool) -> bool:
    """Turns the value checks of ops on CUDA tensors on or off (process-wide); returns the
    previous setting."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    return _C.set_check_inputs(enabled)


@contextlib.contextmanager
def checked_inputs(enabled: bool = True):
    """``with checked_inputs():`` the value checks on CUDA tensors, restored afterwards."""
    before = set_check_inputs(enabled)
    try:
        yield
    finally:
        set_check_inputs(before)


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


# --- swarm kernels -------------------------------------------------------------------------

BOUNDARIES = {"clip": 0, "reflect": 1}
DE_STRATEGIES = {"rand1": 0, "best1": 1}
DE_BOUNDS = {"clip": 0, "resample": 1}


def _choice(value, table, name):
    if value not in table:
        raise ValueError(f"{name} must be one of {sorted(table)}, got {value!r}")
    return table[value]


def pso_step(pos: torch.Tensor, vel: torch.Tensor, pbest: torch.Tensor, gbest: torch.Tensor, lo: torch.Tensor,
             hi: torch.Tensor, *, w: float = 0.6, c1: float = 2.0, c2: float = 2.0, seed: int = 0, step: int = 0,
             boundary: str = "clip", vmax_frac: float = 0.0, ids: torch.Tensor | None = None) -> None:
    """One fused PSO update of B independent swarms, in place (paper 000, eq. (2)-(4)):
    v <- w v + c1 r1 (pbest - x) + c2 r2 (gbest - x); x <- x + v, with r1, r2 uniform per
    coordinate from Philox(seed, step, element).

    pos, vel, pbest [B, N, D]; gbest, lo, hi [B, D] (lo <= hi; lo = hi pins a coordinate).
    boundary "clip" puts a coordinate that leaves [lo, hi] on the bound and zeroes that velocity
    component; "reflect" mirrors it back and reverses the velocity. vmax_frac > 0 clamps |v| to
    that fraction of hi - lo. ids [B] (default 0..B-1) names each problem in the random
    streams, so a problem's trajectory does not depend on the batch it shares.
    """
    torch.ops.pyadv.pso_step(pos, vel, pbest, gbest, lo, hi, ids, float(w), float(c1), float(c2), int(seed), int(step),
                             _choice(boundary, BOUNDARIES, "boundary"), float(vmax_frac))


def swarm_best(pos: torch.Tensor, fitness: torch.Tensor, pbest: torch.Tensor, pbest_fit: torch.Tensor,
               gbest: torch.Tensor, gbest_fit: torch.Tensor) -> None:
    """Updates personal and global bests in place from new fitness [B, N] (lower is better).
    NaN fitness counts as +inf, so it never enters a best; ties go to the lowest index."""
    torch.ops.pyadv.swarm_best(pos, fitness, pbest, pbest_fit, gbest, gbest_fit)


def de_trial(pop: torch.Tensor, best: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, *, F: float = 0.5,
             CR: float = 1.0, strategy: str = "rand1", seed: int = 0, step: int = 0,
             int_mask: torch.Tensor | None = None, ids: torch.Tensor | None = None,
             bounds: str = "resample") -> torch.Tensor:
    """Trial vectors [B, N, D] of differential evolution: "rand1" x_r1 + F (x_r2 - x_r3) or
    "best1" x_best + F (x_r1 - x_r2) with distinct partners r1 != r2 != r3 != i, binomial
    crossover with CR (CR = 1: no crossover, as in Su et al.), coordinates where int_mask
    [B, D] is set rounded (pixel coordinates). A coordinate that leaves [lo, hi] is redrawn
    uniformly inside ("resample", scipy's handling) or put on the bound ("clip"). ids as in
    pso_step."""
    return torch.ops.pyadv.de_trial(pop, best, lo, hi, int_mask, ids, float(F), float(CR),
                                    _choice(strategy, DE_STRATEGIES, "strategy"), _choice(bounds, DE_BOUNDS, "bounds"),
                                    int(seed), int(step))


def de_select(trial: torch.Tensor, trial_fitness: torch.Tensor, pop: torch.Tensor, fitness: torch.Tensor) -> None:
    """Greedy DE selection in place: a trial replaces its member when its fitness is <= the
    member's (NaN counts as +inf)."""
    torch.ops.pyadv.de_select(trial, trial_fitness, pop, fitness)


def sparse_perturb(base: torch.Tensor, idx: torch.Tensor, values: torch.Tensor, n_begin: int = 0,
                   n_end: int | None = None, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """Renders candidates [B * (n_end - n_begin), P]: base images [B, P] plus values [B, N, m]
    at pixel indices idx [B, m], those pixels clamped to [0, 1]. Candidates n_begin..n_end-1
    only, so callers can chunk. ``out`` (CPU) receives the images: a loop that renders every
    generation into the same buffer skips the page faults of a fresh allocation, which on the
    CPU cost more than the rendering itself."""
    n_end = values.shape[1] if n_end is None else n_end
    if out is not None:
        torch.ops.pyadv.sparse_perturb_out(base, idx, values, int(n_begin), int(n_end), out)
        return out
    return torch.ops.pyadv.sparse_perturb(base, idx, values, int(n_begin), int(n_end))


def pixel_replace(base: torch.Tensor, candidates: torch.Tensor, n_begin: int = 0,
                  n_end: int | None = None, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """Renders one-pixel-style candidates [B * (n_end - n_begin), C, H, W]: copies of base
    [B, C, H, W] where each candidate's m pixels (row, col, one value per channel), rows and
    columns rounded and clamped to the image, values clamped to [0, 1], replace the originals.
    ``out`` (CPU) as in :func:`sparse_perturb`."""
    n_end = candidates.shape[1] if n_end is None else n_end
    if out is not None:
        torch.ops.pyadv.pixel_replace_out(base, candidates, int(n_begin), int(n_end), out)
        return out
    return torch.ops.pyadv.pixel_replace(base, candidates, int(n_begin), int(n_end))


def sparse_conv_stage(delta: torch.Tensor, slots: torch.Tensor, outpos: torch.Tensor, base: torch.Tensor,
                      weight: torch.Tensor, in_w: int, pad: tuple[int, int] = (0, 0), pool: int = 1,
                      relu: bool = False) -> torch.Tensor:
    """One conv -> [ReLU] -> [max-pool] stage of a net, evaluated only where an input that
    differs from a base input at a few positions changes it (stride 1, zero padding, pool
    kernel = stride). For G groups of N candidates that share their changed positions:

    delta [G, N, A, Cin]: the change at each group's A changed input positions;
    slots [G, Hin * Win] int32: the row of delta of each input position, -1 where unchanged;
    outpos [G, Q] int32: the pooled output positions wanted (row-major in Hp x Wp), -1 for
    padding rows (returned as 0); base [G, Hc * Wc, Cout]: the base input's conv output,
    bias included, before the ReLU; weight [kh, kw, Cin, Cout]; in_w: the input width.

    Returns [G, N, Q, Cout]: max-pool(ReLU(base + conv(change))) at outpos. The conv costs the
    multiply-adds of the changed inputs only."""
    return torch.ops.pyadv.sparse_conv_stage(delta, slots, outpos, base, weight, int(in_w), int(pad[0]),
                                             int(pad[1]), int(pool), bool(relu))


@torch.library.register_fake("pyadv::sparse_conv_stage")
def _sparse_conv_stage_fake(delta, slots, outpos, base, weight, in_w, pad_h, pad_w, pool, relu):
    return delta.new_empty((delta.shape[0], delta.shape[1], outpos.shape[1], weight.shape[3]))


@torch.library.register_fake("pyadv::pso_step")
def _pso_step_fake(pos, vel, pbest, gbest, lo, hi, ids, w, c1, c2, seed, step, boundary, vmax_frac):
    return None


@torch.library.register_fake("pyadv::swarm_best")
def _swarm_best_fake(pos, fitness, pbest, pbest_fit, gbest, gbest_fit):
    return None


@torch.library.register_fake("pyadv::de_trial")
def _de_trial_fake(pop, best, lo, hi, int_mask, ids, F, CR, strategy, bounds, seed, step):
    return torch.empty_like(pop)


@torch.library.register_fake("pyadv::de_select")
def _de_select_fake(trial, trial_fitness, pop, fitness):
    return None


@torch.library.register_fake("pyadv::sparse_perturb")
def _sparse_perturb_fake(base, idx, values, n_begin, n_end):
    return base.new_empty((base.shape[0] * (n_end - n_begin), base.shape[1]))


@torch.library.register_fake("pyadv::pixel_replace")
def _pixel_replace_fake(base, candidates, n_begin, n_end):
    return base.new_empty((base.shape[0] * (n_end - n_begin), *base.shape[1:]))


@torch.library.register_fake("pyadv::sparse_perturb_out")
def _sparse_perturb_out_fake(base, idx, values, n_begin, n_end, out):
    return None


@torch.library.register_fake("pyadv::pixel_replace_out")
def _pixel_replace_out_fake(base, candidates, n_begin, n_end, out):
    return None


@torch.library.register_fake("pyadv::lbfgsb_start")
def _lbfgsb_start_fake(x, ws, iws, lower, upper, rows, x0, m):
    return None


@torch.library.register_fake("pyadv::lbfgsb_step")
def _lbfgsb_step_fake(x, ws, iws, lower, upper, rows, f, g, m, max_iter, max_eval, max_ls, factr, pgtol):
    return None
