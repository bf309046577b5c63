"""Reference per-pixel FI: the formula of paper 000, eq. (1) with omega = delta x_i, written
as directly as possible, one image and one class at a time, in float64."""
from __future__ import annotations

import math

import torch


def pixel_fi_reference(jac: torch.Tensor, probs: torch.Tensor, target: torch.Tensor, eps: float = 0.0,
                       rank_tol: float = 0.0) -> torch.Tensor:
    """FI[b, i] = g_i^2 / G_i with G_i = sum_k w_k J[b,k,i]^2 and g_i = c_t J[b,t,i].

    Exact (eps = 0): w_k = P_k, c_t = 1. The authors' guards (eps > 0), on probability
    gradients P_k J_k: w_k = (P_k / (sqrt(P_k) + eps))^2, c_t = P_t / (P_t + eps).
    FI = 0 where sqrt(G_i) <= rank_tol (with rank_tol = 0: where G_i = 0).
    Returns float64 [B, P].
    """
    jac = jac.detach().to(torch.float64).cpu()
    probs = probs.detach().to(torch.float64).cpu()
    B, K, P = jac.shape
    out = torch.zeros(B, P, dtype=torch.float64)
    for b in range(B):
        t = int(target[b])
        G = torch.zeros(P, dtype=torch.float64)
        for k in range(K):
            p = float(probs[b, k])
            w = p if eps == 0 else (p / (math.sqrt(p) + eps)) ** 2
            G += w * jac[b, k] ** 2
        c = 1.0 if eps == 0 else float(probs[b, t]) / (float(probs[b, t]) + eps)
        g = c * jac[b, t]
        keep = G > rank_tol**2  # sqrt(G) > rank_tol, for G >= 0
        out[b, keep] = g[keep] ** 2 / G[keep]
    return out
