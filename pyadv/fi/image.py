"""Image-level First-order Influence (paper 000, eq. (1) with omega = delta x, the whole image).

With L [P, K] the log-probability gradients and D = diag(P), the metric is G = L D L^T
(P x P) and, for the objective f = -log P_y,

    FI = l_y^T G^+ l_y = (1 / P_y) [M M^+]_yy,   M = D^1/2 L^T L D^1/2   (K x K),

because with A = L D^1/2, l_y = A e_y / sqrt(P_y) and A^T (A A^T)^+ A = A^+ A = M M^+ is the
projector onto A's row space. So the exact value needs only the K x K Gram matrix of the
Jacobian, never a P x P pseudo-inverse.

The identity sum_k P_k l_k = 0 puts sqrt(P) in A's null space. When that is the whole null
space (rank K - 1, the generic case) the projector is I - sqrt(P) sqrt(P)^T and

    FI = (1 - P_y) / P_y,

which needs no gradient at all. The rank is lower when the model's Jacobian is: ReLU regions
cut off, or logits that depend on fewer than K - 1 directions of the input; then the exact
value is smaller.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn

from .._model_mode import frozen_eval
from ._inputs import check_images, check_logits, objective_classes
from .jacobian import make_plan, stream
from .pixel import num_classes

#: Eigenvalues of M below rtol * (largest eigenvalue) count as zero in the exact form: the
#: rounding of the gradients (about 1e-7 relative in float32, 1e-16 in float64) leaves the
#: null direction sqrt(P) at about its square times the largest eigenvalue.
DEFAULT_RTOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def image_fi(model: nn.Module, x: torch.Tensor, y, target=None, *, exact: bool = False,
             rtol: Optional[float] = None, sub_batch: Optional[int] = None,
             memory_budget: Optional[int] = None, return_rank: bool = False):
    """Image-level FI [N] for the objective -log P(y) (or -log P(target)), omega = delta x.

    Default: the closed form (1 - P_y)/P_y, one forward pass. ``exact=True``: the rank-aware
    K x K form (module docstring), with eigenvalues of M below ``rtol`` times the largest
    treated as zero (default 1e-6 for float32 models, 1e-12 for float64). ``return_rank``
    also returns the rank of M per image (exact only; K - 1 in the generic case).
    """
    check_images(x)
    if rtol is not None and not (rtol > 0):
        raise ValueError(f"rtol must be > 0, got {rtol!r}")
    N = len(x)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    rtol = DEFAULT_RTOL[dtype] if rtol is None else float(rtol)
    with frozen_eval(model):
        K = num_classes(model, x) if N else 0
        y, t = objective_classes(y, target, N, K, x.device)
        if not exact:
            plan = make_plan(model, x, 1, sub_batch=sub_batch, memory_budget=memory_budget) if N else None
            p_t = torch.empty(N, dtype=dtype, device=x.device)
            with torch.no_grad():
                for i in range(0, N, plan.sub_batch if plan else 1):
                    logits = model(x[i:i + plan.sub_batch])
                    check_logits(logits, len(x[i:i + plan.sub_batch]))
                    p_t[i:i + plan.sub_batch] = torch.softmax(logits.to(dtype), 1).gather(
                        1, t[i:i + plan.sub_batch, None]).squeeze(1)
            fi = (1 - p_t) / p_t
            return (fi, None) if return_rank else fi
        fi = torch.empty(N, dtype=dtype, device=x.device)
        rank = torch.empty(N, dtype=torch.long, device=x.device)
        plan = make_plan(model, x, K, strategy="loop", sub_batch=sub_batch, memory_budget=memory_budget,
                         chunk=1) if N else None
        if N:
            # Hold the whole Jacobian of a sub-batch: size the sub-batch for K slots at once.
            per_image = K * x[0].numel() * 8 + 3 * plan.activation_bytes
            budget = memory_budget or (2 << 30)
            plan = dataclasses.replace(plan, sub_batch=max(1, min(plan.sub_batch, budget // per_image)))
            for sb in stream(model, x, plan):
                jac = torch.cat([j for _, j in sb.chunks], 1).to(torch.float64)      # [n, K, P]
                sq = sb.probs.to(torch.float64).sqrt()
                M = sq[:, :, None] * (jac @ jac.transpose(1, 2)) * sq[:, None, :]   # [n, K, K]
                lam, V = torch.linalg.eigh(M)
                keep = lam > rtol * lam[:, -1:].clamp_min(0)
                ts = t[sb.rows]
                proj_tt = (V.gather(1, ts[:, None, None].expand(-1, 1, K)).squeeze(1) ** 2 * keep).sum(1)
                fi[sb.rows] = (proj_tt / sb.probs.to(torch.float64).gather(1, ts[:, None]).squeeze(1)).to(dtype)
                rank[sb.rows] = keep.sum(1)
    return (fi, rank) if return_rank else fi
