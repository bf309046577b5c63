"""Algorithm 2 of Shi et al. (2020): adversarial dataset generation from vulnerable images.

Keep the correctly classified images whose image-level FI (objective -log P(y_true)) is at
least FI_img and whose target class has probability at least P_target; attack each with
Algorithm 1, targeted at its y_target, perturbing the pixels whose FI (objective
-log P(y_target)) is at least FI_pixel.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .._model_mode import predict_probs
from ..fi._inputs import as_labels, check_images
from .fipso import FIPSO
from .result import AttackResult

TARGET_RULES = ("second", "confusion")


def confusion_targets(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """For each true class, its most frequent wrong prediction [K] (§3.2 of the paper), from
    the model's probabilities [n, K] on labelled data y [n]; a class never misclassified there
    gets its most probable wrong class on average."""
    K = probs.shape[1]
    p, yy = probs.double().cpu(), y.cpu()
    conf = torch.zeros(K, K, dtype=torch.long)
    conf.index_put_((yy, p.argmax(1)), torch.ones(len(yy), dtype=torch.long), accumulate=True)
    mean_p = torch.zeros(K, K, dtype=torch.float64).index_add_(0, yy, p)
    eye = torch.eye(K, dtype=torch.bool)
    wrong = conf.masked_fill(eye, -1)
    # Ties and all-correct classes: break by the mean probability of the wrong classes.
    score = wrong.double() + 1e-6 * mean_p.masked_fill(eye, -1) / mean_p.sum(1, keepdim=True).clamp_min(1e-12)
    return score.argmax(1)


def fi_pso_dataset(model: nn.Module, images: torch.Tensor, labels, fi_img: float, p_target: float,
                   fi_pixel: float, targets=None, *, target_rule: str = "second",
                   confusion_data: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
                   exact_fi: bool = False, **options) -> AttackResult:
    """Algorithm 2 (Shi et al. 2020): the adversarial images of the vulnerable images.

    Args:
        images, labels: the data set X and its true labels.
        fi_img, p_target, fi_pixel: the thresholds FI_img, P_target, FI_pixel.
        targets: y_target per image [n] (or one class); None: by ``target_rule``,
            "second" (the second most probable class, the paper's default) or "confusion"
            (the true class's most frequent wrong prediction on ``confusion_data``, default
            the images themselves; what §3.2 uses).
        exact_fi: the rank-aware image-level FI instead of the closed form (1 - P_y)/P_y.
        options: Algorithm 1's options (:class:`pyadv.attacks.FIPSOOptions`), except m,
            pixels other than FI rules, and fi_pixel, which this function sets.

    Returns the AttackResult of the selected images, with per image ``extras``:
    ``index`` (position in ``images``), ``fi_img``, ``p_target`` (on the clean image) and
    ``m`` (pixels with FI >= fi_pixel; 0: none, reported as a failure).
    """
    from ..fi import image_fi

    check_images(images, "images")
    for name, v in (("fi_img", fi_img), ("p_target", p_target), ("fi_pixel", fi_pixel)):
        if not isinstance(v, (int, float)) or not v >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {v!r}")
    if p_target > 1:
        raise ValueError(f"p_target must be a probability in [0, 1], got {p_target!r}")
    if target_rule not in TARGET_RULES:
        raise ValueError(f"target_rule must be one of {TARGET_RULES}, got {target_rule!r}")
    for bad in ("m", "fi_pixel"):
        if bad in options:
            raise ValueError(f"option {bad} is set by Algorithm 2 (m = #pixels with FI >= fi_pixel); leave it out")
    n = len(images)
    device = images.device
    probs = predict_probs(model, images)
    K = probs.shape[1]
    y = as_labels(labels, n, K, "labels", device)
    if targets is not None:
        t = as_labels(targets, n, K, "targets", device)
    elif target_rule == "second":
        t = probs.topk(2, 1).indices[:, 1]
    elif confusion_data is None:
        t = confusion_targets(probs, y).to(device)[y]
    else:
        cx, cy = confusion_data
        cp = predict_probs(model, cx)
        t = confusion_targets(cp, as_labels(cy, len(cx), K, "confusion_data labels", cx.device)).to(device)[y]
    correct = probs.argmax(1) == y
    fi = torch.full((n,), float("nan"), device=device)
    if exact_fi and bool(correct.any()):
        sel = correct.nonzero().flatten()
        fi[sel] = image_fi(model, images[sel], y[sel], exact=True).float()
    elif not exact_fi:
        p_y = probs.gather(1, y[:, None])[:, 0]
        fi = torch.where(correct, (1 - p_y) / p_y, fi)  # the closed form, from the forward already made
    pt = probs.gather(1, t[:, None])[:, 0]
    keep = correct & (fi >= fi_img) & (pt >= p_target) & (t != y)
    rows = keep.nonzero().flatten()
    options.setdefault("pixels", "fi")
    attack = FIPSO(model, fi_pixel=float(fi_pixel), **options)
    result = attack(images[rows], y[rows], target=t[rows], index=rows)
    result.extras.update({"index": rows, "fi_img": fi[rows], "p_target": pt[rows]})
    result.options = {**result.options, "algorithm2": {"fi_img": fi_img, "p_target": p_target,
                                                       "fi_pixel": fi_pixel, "target_rule": target_rule,
                                                       "targets_given": targets is not None}}
    return result
