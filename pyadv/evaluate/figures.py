"""Figures (matplotlib, PNG): FI maps per candidate class (paper 000, Fig. 2 and 3) and the
Manhattan plot of image-level FI over a data set (Fig. 7). Written atomically."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from .._io import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _names(class_names, K):
    names = list(class_names) if class_names is not None else [str(k) for k in range(K)]
    if len(names) != K:
        raise ValueError(f"class_names must have {K} entries, got {len(names)}")
    return names


def _save(fig, path) -> Path:
    plt = _pyplot()
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def fi_maps_figure(image: torch.Tensor, maps: torch.Tensor, probs: torch.Tensor, true_label: int, path,
                   *, class_names: Optional[Sequence[str]] = None, title: Optional[str] = None) -> Path:
    """An image, its per-pixel FI map for each candidate class k (objective -log P(k)) and the
    bar chart of the predicted probabilities.

    image [C, H, W] in [0, 1]; maps [K, C, H, W] (or [K, 1, H, W] for grouped FI); probs [K].
    RGB maps show each channel on its own row, since each channel component is a separate
    pixel in FI. Every map has its own colour scale; its maximum is in the panel title.
    """
    plt = _pyplot()
    K, Cm = maps.shape[0], maps.shape[1]
    names = _names(class_names, K)
    fig, axes = plt.subplots(Cm, K + 2, figsize=(1.45 * (K + 2), 1.75 * Cm + 0.6), squeeze=False)
    img = image.detach().cpu().float()
    p = torch.as_tensor(probs).detach().cpu().float()
    pred = int(p.argmax())
    ax = axes[0, 0]
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(f"label {names[true_label]}\npred {names[pred]}", fontsize=7)
    channel_names = ["R", "G", "B"] if Cm == 3 else [f"c{c}" for c in range(Cm)]
    for c in range(Cm):
        for k in range(K):
            ax = axes[c, k + 1]
            m = maps[k, c].detach().cpu().float()
            ax.imshow(m.numpy(), cmap="hot", vmin=0, vmax=max(float(m.max()), 1e-12))
            marker = "*" if k == true_label else ""
            chan = f" {channel_names[c]}" if Cm > 1 else ""
            ax.set_title(f"y={names[k]}{marker}{chan}\nmax {float(m.max()):.2g}", fontsize=6)
    ax = axes[0, K + 1]
    colors = ["tab:green" if k == true_label else "tab:gray" for k in range(K)]
    ax.bar(range(K), p.numpy(), color=colors)
    ax.set_xticks(range(K), names, fontsize=5)
    ax.set_ylim(0, 1)
    ax.tick_params(axis="y", labelsize=5)
    ax.set_title("P(y | x)", fontsize=7)
    for r in range(Cm):
        for c in range(K + 2):
            a = axes[r, c]
            if (r, c) != (0, K + 1):
                a.set_xticks([])
                a.set_yticks([])
            if r > 0 and c in (0, K + 1):
                a.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def manhattan_plot(image_fi: torch.Tensor, labels: torch.Tensor, path, *, threshold: Optional[float] = None,
                   class_names: Optional[Sequence[str]] = None, log_scale: bool = True,
                   title: Optional[str] = None) -> Path:
    """Image-level FI over a data set, one point per image, grouped and coloured by class
    (paper 000, Fig. 7). ``threshold`` draws the FI_img cut of Algorithm 2 (0.2 in the paper)."""
    plt = _pyplot()
    v = torch.as_tensor(image_fi).detach().cpu().double().flatten()
    lab = torch.as_tensor(labels).detach().cpu().long().flatten()
    if v.shape != lab.shape:
        raise ValueError(f"image_fi and labels must have the same length, got {v.numel()} and {lab.numel()}")
    K = int(lab.max()) + 1 if lab.numel() else 1
    names = _names(class_names, K)
    order = torch.argsort(lab * (len(lab) + 1) + torch.arange(len(lab)))  # by class, then index
    fig, ax = plt.subplots(figsize=(9, 3.2))
    cmap = plt.get_cmap("tab10" if K <= 10 else "tab20")
    pos = torch.empty(len(lab), dtype=torch.long)
    pos[order] = torch.arange(len(lab))
    floor = float(v[v > 0].min()) if bool((v > 0).any()) else 1e-12
    for k in range(K):
        sel = lab == k
        if not bool(sel.any()):
            continue
        vals = v[sel].clamp_min(floor) if log_scale else v[sel]
        ax.scatter(pos[sel].numpy(), vals.numpy(), s=6, color=cmap(k % cmap.N), label=names[k])
        mid = float(pos[sel].float().mean())
        ax.text(mid, 1.01, names[k], transform=ax.get_xaxis_transform(), ha="center", fontsize=7)
    if threshold is not None:
        ax.axhline(threshold, color="k", lw=0.8, ls="--")
        ax.text(len(lab), threshold, f" FI_img = {threshold:g}", va="center", fontsize=7)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("image (grouped by class)")
    ax.set_ylabel("image-level FI")
    ax.set_xticks([])
    if title:
        ax.set_title(title, fontsize=9, pad=14)
    fig.tight_layout()
    return _save(fig, path)


def perturbation_figure(x: torch.Tensor, adv: torch.Tensor, path, *, column_titles: Sequence[str],
                        captions: Sequence[str], title: Optional[str] = None) -> Path:
    """One column per image: the clean image, the perturbation adv - x (blue lowers a pixel,
    red raises it; each column on its own symmetric scale) and the adversarial image with its
    caption (say, the predicted class and probability). x, adv [n, C, H, W] in [0, 1]."""
    plt = _pyplot()
    n = len(x)
    if not (len(adv) == n == len(column_titles) == len(captions)):
        raise ValueError("x, adv, column_titles and captions must have one entry per image")
    fig, axes = plt.subplots(3, n, figsize=(1.55 * n + 0.4, 5.0), squeeze=False)

    def show(ax, img):
        img = img.detach().cpu().float()
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())

    for j in range(n):
        show(axes[0, j], x[j])
        axes[0, j].set_title(column_titles[j], fontsize=7)
        d = (adv[j] - x[j]).detach().cpu().float()
        lim = max(float(d.abs().max()), 1e-6)
        axes[1, j].imshow(d.mean(0).numpy(), cmap="bwr", vmin=-lim, vmax=lim)
        axes[1, j].set_title(f"|d|max {lim:.2f}", fontsize=6)
        show(axes[2, j], adv[j])
        axes[2, j].set_title(captions[j], fontsize=7)
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    axes[0, 0].set_ylabel("clean", fontsize=7)
    axes[1, 0].set_ylabel("perturbation", fontsize=7)
    axes[2, 0].set_ylabel("adversarial", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
