"""Papernot et al.'s (2016) data-set measures of JSMA (the Raissi notes, paper 003): the hardness
H(s, t) of sending class s to class t, and the adversarial distance A(X, t) with the
robustness R(F) = min A; the hardness matrix as a PNG heatmap.

H(s, t) = integral of eps(s, t, tau) d tau, approximated from pairs (eps_k, tau_k) measured at
several maximum distortions Upsilon_k by the trapezoid rule
H ~ sum_k (tau_{k+1} - tau_k) (eps(s, t, tau_{k+1}) + eps(s, t, tau_k)) / 2, with tau_k the
success rate of JSMA from s to t within Upsilon_k and eps_k the mean distortion (fraction of
features changed) of those successes. A JSMA run with a smaller Upsilon is the same
trajectory cut short, so one run at the largest Upsilon gives every (eps_k, tau_k).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from .._model_mode import frozen_eval
from ..attacks._runner import ModelRunner
from ..attacks.jsma import JSMA, saliency_map, target_gradients
from .figures import _names, _pyplot, _save


def adversarial_distance(model: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    """A(X, t) = 1 - (1/M) sum_i 1[S(X, t)[i] > 0] per image: the fraction of the M features
    whose single-feature saliency map for target t is zero (close to 1: few features help,
    the image is far from t). ``target`` an int or [B] classes; returns [B]."""
    with frozen_eval(model):
        B = len(x)
        runner = ModelRunner(model, x[:1], B)
        t = torch.as_tensor(target, device=x.device).long().expand(B).contiguous()
        alpha, beta, _ = target_gradients(runner, x, torch.arange(B, device=x.device), t)
    return 1 - (saliency_map(alpha, beta) > 0).float().mean(1)


def robustness(model: nn.Module, x: torch.Tensor, num_classes: Optional[int] = None) -> dict:
    """R(F) = min over images X and targets t != label(X) of A(X, t), with the A matrix [B, K]
    (NaN at each image's own predicted class) and the (image, target) of the minimum."""
    with torch.no_grad(), frozen_eval(model):
        pred = model(x).argmax(1)
        K = num_classes or model(x[:1]).shape[1]
    A = torch.stack([adversarial_distance(model, x, t) for t in range(K)], 1)
    A = A.masked_fill(torch.nn.functional.one_hot(pred, K).bool(), math.nan)
    flat = A.nan_to_num(math.inf).flatten().argmin()
    return {"R": float(A.flatten()[flat]), "A": A, "image": int(flat // K), "target": int(flat % K)}


def hardness_matrix(model: nn.Module, x: torch.Tensor, y, *, upsilons: Sequence[float] = (0.02, 0.05, 0.1, 0.145),
                    theta: float = 1.0, num_classes: Optional[int] = None, **jsma_options) -> dict:
    """H(s, t) for every pair of classes from JSMA runs of every image of x (true class s) to
    every other class t, at the largest Upsilon (one run per target class for the batch).
    Returns {"H": [K, K] (zero diagonal; NaN for a source class with no image), "tau": [K, K, U],
    "eps": [K, K, U], "upsilons", "counts": images per source class}."""
    ups = sorted(float(u) for u in upsilons)
    if not ups or ups[0] <= 0 or ups[-1] > 1:
        raise ValueError(f"upsilons must be fractions in (0, 1], got {list(upsilons)}")
    y = torch.as_tensor(y, device=x.device).long()
    with torch.no_grad(), frozen_eval(model):
        K = num_classes or model(x[:1]).shape[1]
    P = x[0].numel()
    attack = JSMA(model, theta=theta, upsilon=ups[-1], **jsma_options)
    tau = torch.zeros(K, K, len(ups))
    eps = torch.zeros(K, K, len(ups))
    counts = torch.bincount(y.cpu(), minlength=K)
    for t in range(K):
        rows = (y != t).nonzero().flatten()
        if not len(rows):
            continue
        r = attack(x[rows], y[rows], torch.full((len(rows),), t, device=x.device))
        steps = r.extras["steps_to_success"].cpu()
        changed = r.extras["features_changed"].cpu().float() / P
        src = y[rows].cpu()
        for k, u in enumerate(ups):
            # within Upsilon_k: success in at most floor(Upsilon_k P / 2) pair steps
            ok = (steps >= 0) & (steps <= math.floor(u * P / 2)) & r.success.cpu()
            for s in src.unique().tolist():
                m = src == s
                tau[s, t, k] = ok[m].float().mean()
                eps[s, t, k] = changed[m & ok].mean() if (m & ok).any() else 0.0
    H = torch.zeros(K, K)
    for s in range(K):
        for t in range(K):
            if s == t:
                continue
            order = tau[s, t].argsort()
            ta, ea = tau[s, t][order], eps[s, t][order]
            H[s, t] = ((ta[1:] - ta[:-1]) * (ea[1:] + ea[:-1]) / 2).sum()
    H[counts == 0] = math.nan
    H.fill_diagonal_(0.0)
    return {"H": H, "tau": tau, "eps": eps, "upsilons": ups, "counts": counts}


def hardness_figure(H: torch.Tensor, path, *, class_names: Optional[Sequence[str]] = None,
                    title: str = "JSMA hardness H(s, t)"):
    """The hardness matrix as a heatmap (rows: source class s, columns: target class t)."""
    plt = _pyplot()
    K = H.shape[0]
    names = _names(class_names, K)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * K, 0.8 + 0.5 * K))
    im = ax.imshow(H.numpy(), cmap="viridis")
    ax.set_xticks(range(K), names)
    ax.set_yticks(range(K), names)
    ax.set_xlabel("target class t")
    ax.set_ylabel("source class s")
    for s in range(K):
        for t in range(K):
            v = float(H[s, t])
            if math.isfinite(v):
                ax.text(t, s, f"{v:.3f}", ha="center", va="center", fontsize=6,
                        color="white" if v < float(H.nan_to_num(0).max()) / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)
