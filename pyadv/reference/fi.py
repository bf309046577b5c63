"""Reference FI kernels: the formula of paper 000, eq. (1), written as directly as possible,
one image (and pixel) at a time, in float64."""
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


def group_fi_reference(jac: torch.Tensor, probs: torch.Tensor, target: torch.Tensor, eps: float = 0.0,
                       rank_tol: float = 0.0) -> torch.Tensor:
    """Grouped FI: the C channel components of each pixel as one perturbation.

    jac [B, K, C, HW]. Per image and pixel: G = sum_k w_k a_k a_k^T (C x C), g = c_t a_t,
    FI = g^T pinv(G) g with the eigenvalues of G kept above max(rank_tol^2, C eps lambda_max),
    eps the machine epsilon of jac's dtype. Returns float64 [B, HW].
    """
    machine_eps = torch.finfo(jac.dtype).eps
    jac = jac.detach().to(torch.float64).cpu()
    probs = probs.detach().to(torch.float64).cpu()
    B, K, C, HW = jac.shape
    out = torch.zeros(B, HW, dtype=torch.float64)
    for b in range(B):
        t = int(target[b])
        w = [p if eps == 0 else (p / (math.sqrt(p) + eps)) ** 2 for p in probs[b].tolist()]
        c = 1.0 if eps == 0 else float(probs[b, t]) / (float(probs[b, t]) + eps)
        for i in range(HW):
            a = jac[b, :, :, i]                                  # [K, C]
            G = sum(w[k] * torch.outer(a[k], a[k]) for k in range(K))
            lam, V = torch.linalg.eigh(G)
            cut = max(rank_tol**2, C * machine_eps * float(lam.max()))
            keep = lam > cut
            proj = V[:, keep].T @ (c * a[t])
            out[b, i] = (proj**2 / lam[keep]).sum()
    return out
