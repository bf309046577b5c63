"""Universality of one perturbation (Shi et al. 2020, Table 2): add it to every correctly
classified image and count, per true class and in total, how many are misclassified and how
many land in a target class."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .._model_mode import predict_probs
from ..fi._inputs import as_labels, check_images


def universal_table(model: nn.Module, perturbation: torch.Tensor, images: torch.Tensor, labels,
                    target_class: int, *, class_names: Optional[list] = None, batch: int = 512) -> dict:
    """Adds ``perturbation`` ([C, H, W] or [1, C, H, W]) to every correctly classified image
    (the sum clipped to [0, 1]) and reports, per true class and in total, the % of them
    misclassified and the % classified as ``target_class`` (the target's own images count
    in neither: they cannot be sent to their own class, so the total leaves them out too).

    Returns a dict: ``rows`` (per class: ``class``, ``correct`` images, ``misclassified_pct``,
    ``to_target_pct``), ``total`` (the same over all classes but the target) and
    ``markdown`` (the table as paper 000 prints it).
    """
    check_images(images, "images")
    if perturbation.dim() == 3:
        perturbation = perturbation[None]
    if perturbation.dim() != 4 or perturbation.shape[1:] != images.shape[1:]:
        raise ValueError(f"perturbation must be [C, H, W] = {list(images.shape[1:])} (or with a leading 1), got "
                         f"{tuple(perturbation.shape)}")
    if not bool(torch.isfinite(perturbation).all()):
        raise ValueError("perturbation holds NaN or Inf")
    probs = predict_probs(model, images, batch)
    pred, K = probs.argmax(1), probs.shape[1]
    y = as_labels(labels, len(images), K, "labels", images.device)
    if isinstance(target_class, bool) or not isinstance(target_class, int) or not 0 <= target_class < K:
        raise ValueError(f"target_class must be a class in [0, {K}), got {target_class!r}")
    correct = pred == y
    xs, ys = images[correct], y[correct]
    adv_pred = predict_probs(model, (xs + perturbation.to(xs)).clamp(0, 1), batch).argmax(1)
    names = class_names or [str(k) for k in range(K)]
    rows = []
    tot_n = tot_mis = tot_tgt = 0
    for k in range(K):
        sel = ys == k
        n = int(sel.sum())
        mis = int((adv_pred[sel] != k).sum())
        tgt = int((adv_pred[sel] == target_class).sum())
        rows.append({"class": names[k], "correct": n, "misclassified_pct": 100.0 * mis / n if n else float("nan"),
                     "to_target_pct": 100.0 * tgt / n if n and k != target_class else float("nan")})
        if k != target_class:
            tot_n, tot_mis, tot_tgt = tot_n + n, tot_mis + mis, tot_tgt + tgt
    total = {"class": "total", "correct": tot_n,
             "misclassified_pct": 100.0 * tot_mis / tot_n if tot_n else float("nan"),
             "to_target_pct": 100.0 * tot_tgt / tot_n if tot_n else float("nan")}
    return {"rows": rows, "total": total, "target_class": target_class, "markdown": _markdown(rows, total,
                                                                                             target_class)}


def _markdown(rows, total, target_class) -> str:
    def fmt(v):
        return "–" if v != v else f"{v:.1f}"

    head = "| class | correct | misclassified % | to class " + str(target_class) + " % |\n|---|---|---|---|\n"
    body = "".join(f"| {r['class']} | {r['correct']} | {fmt(r['misclassified_pct'])} | {fmt(r['to_target_pct'])} |\n"
                   for r in rows + [total])
    return head + body
