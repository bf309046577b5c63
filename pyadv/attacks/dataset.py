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

from .._model_mode import frozen_eval
from ..fi._inputs import as_labels, check_images
from .fipso import FIPSO
from .result import AttackResult

TARGET_RULES = ("second", "confusion")


def confusion_targets(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                      batch: int = 512) -> torch.Tensor:
    """For each true class, its most frequent wrong prediction on (x, y) [K] (§3.2 of the
    paper); a class never misclassified there gets its most probable wrong class on average."""
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    mean_p = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    with frozen_eval(model), torch.inference_mode():
        for i in range(0, len(x), batch):
            p = model(x[i:i + batch]).float().softmax(1).cpu()
            yy = y[i:i + batch].cpu()
            conf.index_put_((yy, p.argmax(1)), torch.ones(len(yy), dtype=torch.long), accumulate=True)
            mean_p.index_add_(0, yy, p.double())
    eye = torch.eye(num_classes, dtype=torch.bool)
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
    with frozen_eval(model), torch.inference_mode():
        probs = torch.cat([model(images[i:i + 512]).float().softmax(1) for i in range(0, n, 512)]) if n else None
    K = probs.shape[1] if n else 2
    y = as_labels(labels, n, K, "labels", device)
    if targets is not None:
        t = as_labels(targets, n, K, "targets", device)
    elif target_rule == "second":
        t = probs.topk(2, 1).indices[:, 1] if n else y.clone()
    else:
        cx, cy = confusion_data if confusion_data is not None else (images, y)
        t = confusion_targets(model, cx, as_labels(cy, len(cx), K, "confusion_data labels", cx.device), K
                              ).to(device)[y]
    correct = probs.argmax(1) == y if n else torch.zeros(0, dtype=torch.bool, device=device)
    fi = torch.full((n,), float("nan"), device=device)
    if bool(correct.any()):
        sel = correct.nonzero().flatten()
        fi[sel] = image_fi(model, images[sel], y[sel], exact=exact_fi).float()
    pt = probs.gather(1, t[:, None])[:, 0] if n else fi
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
