"""Per-pixel First-order Influence on models (paper 000, eq. (1) with omega = delta x_i, and
the objective of eq. (5))."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import ops
from .._model_mode import frozen_eval
from ._inputs import check_images, check_logits, objective_classes
from .jacobian import make_plan, stream

#: "exact": eq. (1) as printed. "sa_dnn": the guards of the authors' code (shu-hai/SA_DNN).
CONVENTIONS = {"exact": (0.0, 0.0), "sa_dnn": (ops.SA_DNN_EPS, ops.SA_DNN_RANK_TOL)}
FISHER = ("exact", "topk", "sampled")
GROUPS = (None, "pixel")


def num_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        logits = model(x[:1])
    check_logits(logits, 1)
    return logits.shape[1]


def _class_weight(p: torch.Tensor, eps: float) -> torch.Tensor:
    """The weight of a class's squared gradient in G (as the kernels' class_weight)."""
    return p if eps == 0 else (p / (p.sqrt() + eps)) ** 2


def _target_scale(p: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.ones_like(p) if eps == 0 else p / (p + eps)


def _all_but_most_probable(probs: torch.Tensor, rows: slice) -> torch.Tensor:
    """Every class except each image's most probable one, whose gradient follows from the
    others through sum_k P_k d log P_k = 0: K - 1 backward passes instead of K."""
    n, K = probs.shape
    m = probs.argmax(1, keepdim=True)
    idx = torch.arange(K, device=probs.device).expand(n, K)
    return idx[idx != m].view(n, K - 1)


def _topk_slots(k: int, t: torch.Tensor):
    """Slot 0 is the objective's class; slots 1..k the k most probable classes."""

    def select(probs: torch.Tensor, rows: slice) -> torch.Tensor:
        return torch.cat([t[rows, None], probs.topk(k, dim=1).indices], 1)

    return select


def _sampled_slots(samples: int, t: torch.Tensor, gen: torch.Generator):
    """Slot 0 is the objective's class; slots 1..S labels drawn from P (with replacement)."""

    def select(probs: torch.Tensor, rows: slice) -> torch.Tensor:
        draws = torch.multinomial(probs.double().cpu(), samples, replacement=True, generator=gen)
        return torch.cat([t[rows, None], draws.to(probs.device)], 1)

    return select


def _slots(fisher: str, probs: torch.Tensor, classes: torch.Tensor, t: torch.Tensor, samples: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights [n, M] of the slots in G, the slot holding the objective's gradient [n]).

    exact: every class but the most probable, weight P_k (the missing one is added after);
    topk: every kept class once, weight P_k (slot 0, the objective's class, only when it is
    not among the top k); sampled: each draw 1/S, an unbiased estimate of G's diagonal (slot
    0 only supplies the numerator)."""
    n = len(classes)
    if fisher == "exact":
        hit = classes == t[:, None]
        return probs.gather(1, classes), torch.where(hit.any(1), hit.float().argmax(1), 0)
    zero = torch.zeros(n, dtype=torch.long, device=classes.device)
    first, rest = classes[:, :1], classes[:, 1:]
    if fisher == "topk":
        in_top = (rest == first).any(1, keepdim=True)
        return torch.cat([probs.gather(1, first).masked_fill(in_top, 0.0), probs.gather(1, rest)], 1), zero
    return torch.cat([torch.zeros_like(first, dtype=probs.dtype),
                      torch.full(rest.shape, 1.0 / samples, dtype=probs.dtype, device=probs.device)], 1), zero


def _add_outer(acc: ops.FIAccumulator, v: torch.Tensor, scale: torch.Tensor, group: Optional[int]) -> None:
    """acc.den += scale * v v^T per pixel (v [n, P]; packed C x C blocks when grouped)."""
    if not group:
        acc.den += scale[:, None] * v * v
        return
    vv = v.view(v.shape[0], group, -1)
    j = 0
    for c1 in range(group):
        for c2 in range(c1, group):
            acc.den[:, j] += scale[:, None] * vv[:, c1] * vv[:, c2]
            j += 1


def _fill(sb, out, left_out, fisher, samples, t, eps, rank_tol, group, dtype) -> None:
    """Streams one sub-batch's Jacobian chunks into the FI op and writes its rows of out."""
    n = sb.probs.shape[0]
    probs = sb.probs.to(dtype)
    ts = t[sb.rows]
    weights, slot_target = _slots(fisher, probs, sb.classes, ts, samples)
    acc = ops.FIAccumulator(weights, slot_target, out.shape[1], eps=eps, rank_tol=rank_tol, dtype=dtype,
                            group=group)
    # s = sum over the slots of P_k d log P_k, for the classes outside them.
    signed = None if fisher == "sampled" else torch.zeros(n, out.shape[1] * (group or 1), dtype=dtype,
                                                           device=out.device)
    for m0, jac in sb.chunks:
        jac = jac.to(dtype)
        if signed is not None:
            signed += torch.einsum("nm,nmp->np", weights[:, m0:m0 + jac.shape[1]], jac)
        acc.add(jac.reshape(n, jac.shape[1], group, -1) if group else jac, m0)
    if fisher == "exact":
        # The most probable class m: d log P_m = -s / P_m, exactly.
        p_m = probs.max(1).values
        l_m = -signed / p_m[:, None]
        _add_outer(acc, l_m, _class_weight(p_m, eps), group)
        is_m = ts == probs.argmax(1)
        if bool(is_m.any()):
            num = (_target_scale(p_m, eps)[:, None] * l_m)[is_m]
            acc.num[is_m] = num.view_as(acc.num[is_m])
    elif fisher == "topk":
        q = (1.0 - weights.sum(1)).clamp_min(0.0)
        left_out[sb.rows] = q
        # The left-out classes satisfy sum_{k left out} P_k d log P_k = -s, so by Cauchy-Schwarz
        # they add at least s s^T / q to G. Below q = 1e-6 the floor is negligible and rounding
        # would dominate it.
        _add_outer(acc, signed, torch.where(q > 1e-6, 1.0 / q.clamp_min(1e-6), torch.zeros_like(q)), group)
    out[sb.rows] = acc.result()


def pixel_fi(model: nn.Module, x: torch.Tensor, y, target=None, *, convention: str = "exact",
             group: Optional[str] = None, fisher: str = "exact", k: Optional[int] = None,
             samples: Optional[int] = None, seed: int = 0, strategy: str = "auto",
             sub_batch: Optional[int] = None, chunk: Optional[int] = None,
             memory_budget: Optional[int] = None, channels_last: Optional[bool] = None,
             return_info: bool = False):
    """Per-pixel FI maps of a batch (paper 000, eq. (1) and (5)).

    The objective is f = -log P(y) when ``target`` is None, else -log P(target) (a target must
    differ from the label). Channel components are separate pixels, as in the paper: the
    result is shaped like x. With ``group="pixel"`` the C channel components of a pixel form
    one C-dimensional perturbation (G is C x C, pseudo-inverted in the kernel) and the result
    is [N, 1, H, W].

    Args:
        convention: "exact", eq. (1) as printed, or "sa_dnn", the authors' code: eps = 1e-3
            guards on the probabilities and a 1e-3 cut-off on the singular values of the
            scaled gradients. Exact per-pixel FI is scale-free: every pixel's value lies in
            [0, (1 - P_y)/P_y] however small its gradients, so pixels whose gradients all
            but vanish (borders) can rank with the most sensitive ones; the sa_dnn cut-off
            sets those to 0, and its eps shrinks the metric of unlikely classes, which lets
            values exceed (1 - P_y)/P_y.
        fisher: how G = sum_k P_k (d log P_k)^2 is formed, for models with many classes:
            "exact" (all K classes; K - 1 backward passes: the most probable class's gradient
            is -sum_{k != m} P_k d log P_k / P_m, from the identity sum_k P_k d log P_k = 0,
            and P_m >= 1/K keeps that division well-conditioned);
            "topk" (the target and the ``k`` most probable classes; k + 1 passes). The classes
            left out would only add to G, so the result is an upper bound on exact FI; it
            adds the Cauchy-Schwarz floor (sum_S P_k d log P_k)^2 / Q of their contribution,
            Q the probability mass left out, reported per image as ``left_out_mass``;
            "sampled" (``samples`` = S labels drawn from P, seeded: (1/S) sum_s (d log P_ks)^2
            is an unbiased estimate of G; S + 1 passes).
        strategy, sub_batch, chunk, memory_budget, channels_last: how Jacobians are computed
            (:mod:`pyadv.fi.jacobian`); automatic by default. A batch larger than the memory
            budget is processed in sub-batches, never refused.
        return_info: also return a dict (the plan; ``left_out_mass`` for topk).

    The model runs in eval mode with frozen parameters; each module's mode and each
    parameter's requires_grad are restored afterwards, and x is not modified.
    """
    check_images(x)
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}")
    if group not in GROUPS:
        raise ValueError(f"group must be None or 'pixel', got {group!r}")
    if fisher not in FISHER:
        raise ValueError(f"fisher must be one of {FISHER}, got {fisher!r}")
    if fisher != "exact" and convention != "exact":
        raise ValueError("fisher='topk' or 'sampled' approximates the exact metric; use convention='exact'")
    if group == "pixel" and not 1 <= x.shape[1] <= 4:
        raise ValueError(f"group='pixel' needs 1 to 4 channels, got {x.shape[1]}")
    N, C, H, W = x.shape
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    P, HW = C * H * W, H * W
    out = torch.zeros(N, HW if group else P, dtype=dtype, device=x.device)
    left_out = torch.zeros(N, dtype=dtype, device=x.device)
    eps, rank_tol = CONVENTIONS[convention]
    with frozen_eval(model):  # every forward pass, the probing ones included, in eval mode
        K = num_classes(model, x) if N else 0
        y, t = objective_classes(y, target, N, K, x.device)
        if fisher == "topk" and (not isinstance(k, int) or not 1 <= k <= K):
            raise ValueError(f"fisher='topk' needs k, an int in [1, {K}], got {k!r}")
        if fisher == "sampled" and (not isinstance(samples, int) or samples < 1):
            raise ValueError(f"fisher='sampled' needs samples, an int >= 1, got {samples!r}")
        n_slots = {"exact": K - 1, "topk": (k or 0) + 1, "sampled": (samples or 0) + 1}[fisher]
        plan = make_plan(model, x, n_slots, strategy=strategy, sub_batch=sub_batch, chunk=chunk,
                         memory_budget=memory_budget, channels_last=channels_last) if N else None
        select = _all_but_most_probable
        if fisher == "topk":
            select = _topk_slots(k, t)
        elif fisher == "sampled":
            select = _sampled_slots(samples, t, torch.Generator().manual_seed(seed))
        if N:
            for sb in stream(model, x, plan, select):
                _fill(sb, out, left_out, fisher, samples, t, eps, rank_tol, C if group else None, dtype)
    maps = out.view(N, 1, H, W) if group else out.view_as(x)
    maps = maps.to(x.dtype)
    if return_info:
        info = {"plan": plan, "num_classes": K, "slots": n_slots}
        if fisher == "topk":
            info["left_out_mass"] = left_out.to(x.dtype)
        return maps, info
    return maps
