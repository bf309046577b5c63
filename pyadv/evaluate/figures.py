"""Figures (matplotlib, PNG) of FI maps."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch

from .._io import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fi_maps_figure(image: torch.Tensor, maps: torch.Tensor, probs: torch.Tensor, true_label: int, path,
                   *, class_names: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Paper 000, Fig. 2: an image, its per-pixel FI map for each candidate class (objective
    -log P(k)) and the bar chart of the predicted probabilities.

    image [C, H, W] in [0, 1]; maps [K, C, H, W]; probs [K]. Grey images show one map per
    class; RGB maps show the channel components summed (each is a separate pixel in FI).
    Each map has its own colour scale; its maximum is printed in the panel title.
    """
    plt = _pyplot()
    K = maps.shape[0]
    names = list(class_names) if class_names is not None else [str(k) for k in range(K)]
    if len(names) != K:
        raise ValueError(f"class_names must have {K} entries, got {len(names)}")
    cols = math.ceil((K + 2) / 2)
    fig, axes = plt.subplots(2, cols, figsize=(1.9 * cols, 4.6))
    axes = axes.ravel()
    img = image.detach().cpu().float()
    ax = axes[0]
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
    pred = int(torch.as_tensor(probs).argmax())
    ax.set_title(f"label {names[true_label]}, pred {names[pred]}", fontsize=8)
    panel = {k: k + 1 if k < cols - 1 else k + 2 for k in range(K)}
    for k in range(K):
        ax = axes[panel[k]]
        m = maps[k].detach().cpu().float().sum(0)
        ax.imshow(m.numpy(), cmap="hot", vmin=0, vmax=max(float(m.max()), 1e-12))
        marker = " (true)" if k == true_label else ""
        ax.set_title(f"y={names[k]}{marker}, max {float(m.max()):.3g}", fontsize=7)
    ax = axes[cols]
    p = torch.as_tensor(probs).detach().cpu().float()
    colors = ["tab:green" if k == true_label else "tab:gray" for k in range(K)]
    ax.bar(range(K), p.numpy(), color=colors)
    ax.set_xticks(range(K), names, fontsize=6)
    ax.set_ylim(0, 1)
    ax.set_title("P(y | x)", fontsize=8)
    used = {0, cols, *panel.values()}
    for i, ax in enumerate(axes):
        if i != cols:
            ax.set_xticks([])
            ax.set_yticks([])
        if i not in used:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out
