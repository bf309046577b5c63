"""The hot/cold attack (Rozsa, Rudd and Boult 2016, §4.2, eq. (7)) with hard positives.

For an image x with label y and features h(x) of a layer with one value per class (the
logits by default, "the last layer before softmax"), the hot/cold vector is

    w_hc[j] = |h_j(x)| for the hot class j = y~,   -|h_y(x)| for the cold class y,   0 else,

and its pull-back to the image, eta = J_h(x)^T w_hc (one vector-Jacobian product), is a
direction towards y~ and away from y. HC-k takes as hot class the k-th most similar class (the
k-th largest h_j, j != y). HC-D searches along the derivatives eta, HC-S along sign(eta).
Every direction is searched for the closest adversarial with the line-and-bisection search of
§4.3 (``minimal_along``); hard positives scale each found step by factors >= 1 (x1.05,
x1.10 in the paper); PASS (eq. (5)) scores and, with a threshold tau, filters the results.

The paper writes the cold entry as -h_y(x) and says any negative value there helps; it is
negative whenever h_y > 0 (a correctly classified image's own logit, and any ReLU feature).
pyadv uses -|h_y(x)|, which equals the paper's value there and keeps the cold entry negative
where h_y < 0, as the paper's argument needs (the hot entry takes |h| for the same reason).

One call gives every direction of every image: one forward and one backward pass per
direction (the graph of the forward serves all of them), then one batched search over the
(image, direction) rows, each row leaving the batch when its search ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F

from ._base import Attack, CommonOptions, RawResult, bool_option, int_option, number_option, option_error, register
from .gradient import _normalise, minimal_along, step_image

MODES = {"derivative": ("derivative",), "sign": ("sign",), "both": ("derivative", "sign")}
EXTRAS = ("fgv", "fgs")
SELECT = ("pass", "l2", "linf")
REACH = ("any", "hot")


@dataclass(frozen=True)
class HotColdOptions(CommonOptions):
    """classes: the hot classes by similarity rank: None (every class but y: HC-1 ... HC-(K-1)),
        an int n (HC-1 ... HC-n) or a tuple of ranks (HC-k for each k); a call's target replaces
        them with that one class.
    mode: "derivative" (HC-D), "sign" (HC-S) or "both" (each rank searched both ways; one
        backward pass serves both).
    extra: loss-gradient directions searched alongside, from ("fgv", "fgs"): the gradient of
        the cross-entropy of y (towards a call's target: of the target, descended), raw or its
        sign (paper 001 §4.1's FGV and FGS, as minimal searches).
    layer: the name of the module whose output is h (``dict(model.named_modules())``); it must
        give one value per class; None: the model's output (the logits).
    reach: "any" (an adversarial is any class but y, eq. (5)) or "hot" (a direction succeeds
        only at its hot class, so every success of an image has a different class).
    scales: hard-positive factors >= 1: each found step s along a direction is also rendered
        at factor * s (the paper's x1.05 and x1.10).
    tau: PASS threshold in [0, 1] (eq. (5)): a direction or hard positive below it is not a
        result; None keeps all.
    pass_scores: compute PASS of every found adversarial and hard positive (batched, once).
    select: which direction's adversarial becomes the image's ``adv``: the highest "pass", or
        the smallest "l2" or "linf" among the successful directions.
    start, grow, bisect: the line search (see FGS's ``minimal``)."""
    classes: Union[None, int, tuple] = None
    mode: str = "derivative"
    extra: tuple = ()
    layer: Optional[str] = None
    reach: str = "any"
    scales: tuple = ()
    tau: Optional[float] = None
    pass_scores: bool = True
    select: str = "pass"
    start: float = 1 / 255
    grow: float = 2.0
    bisect: int = 12

    def __post_init__(self):
        super().__post_init__()
        c = self.classes
        if isinstance(c, (list, tuple)):
            object.__setattr__(self, "classes", tuple(c))
            if not c or len(set(c)) != len(c):
                raise option_error("classes", c, "a non-empty tuple of distinct similarity ranks k >= 1")
            for k in c:
                int_option("classes", k, 1)
        elif c is not None:
            int_option("classes", c, 1)
        if self.mode not in MODES:
            raise option_error("mode", self.mode, f"one of {tuple(MODES)}")
        extra = (self.extra,) if isinstance(self.extra, str) else tuple(self.extra)
        object.__setattr__(self, "extra", extra)
        if any(e not in EXTRAS for e in extra) or len(set(extra)) != len(extra):
            raise option_error("extra", self.extra, f"distinct names from {EXTRAS}")
        if self.layer is not None and not isinstance(self.layer, str):
            raise option_error("layer", self.layer, "None or a module name of the model")
        if self.reach not in REACH:
            raise option_error("reach", self.reach, f"one of {REACH}")
        scales = (self.scales,) if isinstance(self.scales, (int, float)) else tuple(self.scales)
        object.__setattr__(self, "scales", scales)
        for f in scales:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not f >= 1 or f == float("inf"):
                raise option_error("scales", self.scales, "finite factors >= 1 (the paper uses 1.05 and 1.10)")
        if self.tau is not None and (isinstance(self.tau, bool) or not isinstance(self.tau, (int, float))
                                     or not 0 <= self.tau <= 1):
            raise option_error("tau", self.tau, "None or a PASS threshold in [0, 1]")
        bool_option("pass_scores", self.pass_scores)
        if self.select not in SELECT:
            raise option_error("select", self.select, f"one of {SELECT}")
        if not self.pass_scores and (self.tau is not None or self.select == "pass"):
            raise option_error("pass_scores", False, "True when tau is set or select='pass' (both need PASS)")
        number_option("start", self.start, positive=True)
        if not (isinstance(self.grow, (int, float)) and self.grow > 1):
            raise option_error("grow", self.grow, "a number > 1")
        int_option("bisect", self.bisect, 0)


def hot_ranks(classes, num_classes: int) -> list[int]:
    """The similarity ranks a ``classes`` option names, for a model with K classes."""
    K = num_classes
    ranks = list(range(1, K)) if classes is None else \
        list(range(1, classes + 1)) if isinstance(classes, int) else list(classes)
    bad = [k for k in ranks if k >= K]
    if bad:
        raise ValueError(f"option classes={classes!r}: hot/cold rank k={bad[0]} needs k < K={K} (the model has "
                         f"{K} classes, so at most K-1 = {K - 1} other classes to rank)")
    return ranks


def direction_names(options: dict, num_classes: int, targeted: bool = False) -> list[str]:
    """The paper's names of a call's directions, in the order of the result's direction axis:
    "HC-D-k" / "HC-S-k" per rank and mode ("HC-D-t" / "HC-S-t" towards a call's target), then
    "FGV" / "FGS". Works on a loaded result's ``options``."""
    ranks = ["t"] if targeted else hot_ranks(options["classes"] if not isinstance(options["classes"], list)
                                             else tuple(options["classes"]), num_classes)
    names = [f"HC-{m[0].upper()}-{k}" for m in MODES[options["mode"]] for k in ranks]
    return names + [e.upper() for e in options["extra"]]


def _hot_cold_vectors(h: torch.Tensor, y: torch.Tensor, hot: torch.Tensor) -> torch.Tensor:
    """w_hc [R, n, ...] for features h [n, ...] (K values per image), labels y [n], hot [R, n]."""
    flat = h.flatten(1).float()
    R, n = hot.shape
    w = flat.new_zeros(R, n, flat.shape[1])
    w.scatter_(2, hot[..., None], flat.gather(1, hot.T).T.abs()[..., None])
    w[:, torch.arange(n, device=h.device), y] = -flat.gather(1, y[:, None])[:, 0].abs()
    return w.view(R, *h.shape)


@register("hotcold")
class HotCold(Attack):
    """Hot/cold (Rozsa et al. 2016, eq. (7)): every requested direction of every image searched
    for its closest adversarial, with hard positives and PASS.

    ``adv`` is one adversarial per image (the ``select`` rule among its successful directions;
    x itself where none succeeded). ``extras`` hold every direction: ``dir_adv`` [B, D, C, H, W],
    ``dir_class``, ``dir_hot`` (-1 for FGV/FGS), ``dir_adversarial`` (the label changed / the
    hot class was reached), ``dir_success`` (adversarial and PASS >= tau), ``dir_pass``,
    ``dir_l2``, ``dir_linf``, ``dir_scale`` (the step, NaN on failure), each [B, D]; and the hard
    positives ``hp_adv`` [B, D, S, C, H, W], ``hp_class``, ``hp_adversarial``, ``hp_keep``
    (the direction found an adversarial and the hard positive's PASS >= tau), ``hp_pass``,
    ``hp_l2``, ``hp_linf`` [B, D, S]. ``direction_names(result.options, K)`` names the D axis;
    :func:`hot_cold_samples` flattens everything into a dataset."""

    Options = HotColdOptions
    # its successes are decided by float32 checks along each direction already, and its bf16
    # VJPs (the model as given: they hook a layer) measured 0.8-1.0x float32
    # (benchmarks/precision.py): "auto" keeps float32
    auto_reduced = False

    def _layer(self):
        name = self.options.layer
        if name is None:
            return None
        modules = dict(self.model.named_modules())
        if name not in modules or name == "":
            some = [n for n in modules if n][:12]
            raise ValueError(f"option layer={name!r}: the model has no module of that name; its modules include "
                             f"{', '.join(some)}{' ...' if len(modules) > 13 else ''}")
        return modules[name]

    def _check_call(self, x, y, target):
        self._layer()
        if self.options.pass_scores and min(x.shape[-2:]) < 11:
            raise ValueError(f"PASS needs images of at least 11 x 11 pixels (SSIM's window), got "
                             f"{x.shape[-2]} x {x.shape[-1]}: pass pass_scores=False and select='l2' or 'linf' "
                             f"(and no tau)")

    def _run(self, x, y, target, runner, index):
        o = self.options
        B, K, dev = len(x), runner.num_classes, x.device
        targeted = target is not None
        ranks = [None] if targeted else hot_ranks(o.classes, K)
        modes = MODES[o.mode]
        layer = self._layer()
        R = len(ranks)
        hot = torch.empty(R, B, dtype=torch.long, device=dev)

        def cotangents(h, z, rows):
            if h.flatten(1).shape[1] != K:
                raise ValueError(f"option layer={o.layer!r}: the layer gives {h.flatten(1).shape[1]} values per "
                                 f"image; hot/cold needs one per class ({K})")
            yy = y[rows]
            if targeted:
                hr = target[rows][None]
            else:
                others = h.flatten(1).float().scatter(1, yy[:, None], float("-inf"))
                order = others.argsort(dim=1, descending=True, stable=True)  # the most similar class first
                hr = order[:, [k - 1 for k in ranks]].T
            hot[:, rows] = hr
            wz = None
            if o.extra:
                cls = target[rows] if targeted else yy
                # d CE(z, cls)/dz = softmax(z) - e_cls; descended towards a target
                wz = (F.softmax(z.float(), 1) - F.one_hot(cls, K).float())[None] * (-1.0 if targeted else 1.0)
            return _hot_cold_vectors(h, yy, hr), wz

        rows = torch.arange(B, device=dev)
        eta, _, _ = runner.vjps(x, rows, cotangents, layer)  # [R (+1), B, C, H, W]
        dirs, dir_hot = [], []
        for m in modes:
            for j in range(R):
                dirs.append(eta[j].sign() if m == "sign" else _normalise(eta[j], "linf"))
                dir_hot.append(hot[j])
        for e in o.extra:
            dirs.append(eta[R].sign() if e == "fgs" else _normalise(eta[R], "linf"))
            dir_hot.append(torch.full((B,), -1, dtype=torch.long, device=dev))
        D = len(dirs)
        u = torch.stack(dirs, 1).flatten(0, 1)                        # rows (image, direction), image-major
        hot_bd = torch.stack(dir_hot, 1)                              # [B, D]
        owner = rows.repeat_interleave(D)
        xr, yr = x[owner], y[owner]
        if targeted:
            goal = target[owner]
        elif o.reach == "hot":
            goal = hot_bd.flatten()
        else:
            goal = None
        adv, scale, _, iters, pred, prob = minimal_along(runner, xr, yr, goal, u, start=o.start, grow=o.grow,
                                                   bisect=o.bisect, integer=o.quantize, owners=owner)
        found = ~scale.isnan()
        # Hard positives: the found step times each factor, along the same direction.
        S = len(o.scales)
        hp = xr.new_empty(len(xr), S, *x.shape[1:]) if S else None
        hp_class = torch.full((len(xr), S), -1, dtype=torch.long, device=dev)
        hp_prob = torch.full((len(xr), S), float("nan"), device=dev)
        hp_adv = torch.zeros(len(xr), S, dtype=torch.bool, device=dev)
        fr = found.nonzero().flatten()
        for i, f in enumerate(o.scales):
            hp[:, i] = adv
            if len(fr):
                img = step_image(xr[fr], u[fr], scale[fr].double() * f, o.quantize)
                top, p = runner.probs(img, owner[fr], exact=True).max(1)
                hp[fr, i] = img
                hp_class[fr, i] = p
                hp_prob[fr, i] = top.float()
                g = goal[fr] if goal is not None else torch.full_like(p, -1)
                hp_adv[fr, i] = torch.where(g >= 0, p == g, p != yr[fr])
        # PASS of every found adversarial and hard positive, in one batched call.
        nan = float("nan")
        dir_pass = torch.full((len(xr),), nan, device=dev)
        hp_pass = torch.full((len(xr), S), nan, device=dev)
        if o.pass_scores and len(fr):
            from ..metrics import pass_score

            imgs = torch.cat([adv[fr]] + [hp[fr, i] for i in range(S)])
            ref = xr[fr].repeat(1 + S, *[1] * (x.dim() - 1))
            ps = pass_score(imgs, ref).float().to(dev).view(1 + S, len(fr))
            dir_pass[fr] = ps[0]
            for i in range(S):
                hp_pass[fr, i] = ps[1 + i]
        ok_tau = torch.ones_like(found) if o.tau is None else (dir_pass >= o.tau)
        dir_success = found & ok_tau
        hp_keep = found[:, None] & (torch.ones_like(hp_pass, dtype=torch.bool) if o.tau is None else hp_pass >= o.tau)
        d = (adv - xr).flatten(1)
        dir_l2, dir_linf = d.norm(dim=1).float(), d.abs().amax(1).float()
        # The image's adv: the best successful direction by `select`.
        score = {"pass": dir_pass, "l2": -dir_l2, "linf": -dir_linf}[o.select].view(B, D).double()
        score = score.nan_to_num(float("-inf")).masked_fill(~dir_success.view(B, D), float("-inf"))
        best = score.argmax(1)
        any_ok = dir_success.view(B, D).any(1)
        chosen = torch.where(any_ok, best, torch.full_like(best, -1))
        out = x.clone()
        sel = any_ok.nonzero().flatten()
        out[sel] = adv.view(B, D, *x.shape[1:])[sel, best[sel]]
        extras = {
            "dir_adv": adv.view(B, D, *x.shape[1:]), "dir_class": pred.view(B, D),
            "dir_prob": prob.view(B, D), "dir_hot": hot_bd,
            "dir_adversarial": found.view(B, D), "dir_success": dir_success.view(B, D),
            "dir_pass": dir_pass.view(B, D), "dir_l2": dir_l2.view(B, D), "dir_linf": dir_linf.view(B, D),
            "dir_scale": scale.view(B, D), "chosen": chosen,
        }
        if S:
            hd = (hp - xr[:, None]).flatten(2)
            extras.update({
                "hp_adv": hp.view(B, D, S, *x.shape[1:]), "hp_class": hp_class.view(B, D, S),
                "hp_prob": hp_prob.view(B, D, S),
                "hp_adversarial": hp_adv.view(B, D, S), "hp_keep": hp_keep.view(B, D, S),
                "hp_pass": hp_pass.view(B, D, S), "hp_l2": hd.norm(dim=2).float().view(B, D, S),
                "hp_linf": hd.abs().amax(2).float().view(B, D, S)})
        return RawResult(adv=out, iterations=iters.view(B, D).sum(1), search_success=any_ok, extras=extras)


def hot_cold_samples(result, *, kinds: Optional[list] = None, kept_only: bool = True) -> dict:
    """A hot/cold result as a flat dataset: every direction's adversarial and every hard
    positive, one row each, named as in the paper ("HC-D-3", "HC-S-1", "FGV", "HC-D-1-1.05").

    kinds: keep only these names (None: all); kept_only: only rows that are results (a found
    adversarial with PASS >= tau; hard positives of such directions with PASS >= tau).
    Returns images [M, C, H, W], label (the true class, to train on) [M], pred and its
    probability prob [M], source
    (the image's row in the result) [M], pass, l2, linf [M], and kind (M names)."""
    ex = result.extras
    if "dir_adv" not in ex:
        raise ValueError("result is not a hot/cold result (it has no extras['dir_adv'])")
    B, D = ex["dir_success"].shape
    K = result.probs.shape[1]
    names = direction_names(result.options, K, targeted=bool((result.target >= 0).any()))
    if len(names) != D:
        raise ValueError(f"the result has {D} directions but its options name {len(names)}")
    parts = [(names, ex["dir_adv"], ex["dir_class"], ex["dir_prob"], ex["dir_success"] if kept_only else
              torch.ones_like(ex["dir_success"]), ex["dir_pass"], ex["dir_l2"], ex["dir_linf"])]
    for i, f in enumerate(result.options["scales"] if "hp_adv" in ex else []):
        parts.append(([f"{n}-{f:g}" for n in names], ex["hp_adv"][:, :, i], ex["hp_class"][:, :, i],
                      ex["hp_prob"][:, :, i],
                      ex["hp_keep"][:, :, i] if kept_only else torch.ones_like(ex["hp_keep"][:, :, i]),
                      ex["hp_pass"][:, :, i], ex["hp_l2"][:, :, i], ex["hp_linf"][:, :, i]))
    cols = {k: [] for k in ("images", "label", "pred", "prob", "source", "pass", "l2", "linf")}
    kind: list[str] = []
    src = torch.arange(B, device=result.adv.device)[:, None].expand(B, D)
    for nm, imgs, cls, pb, keep, ps, l2, li in parts:
        want = torch.tensor([kinds is None or n in kinds for n in nm], device=keep.device)
        m = keep & want[None]
        cols["images"].append(imgs[m])
        cols["label"].append(result.y[:, None].expand(B, D)[m])
        cols["pred"].append(cls[m])
        cols["prob"].append(pb[m])
        cols["source"].append(src[m])
        cols["pass"].append(ps[m])
        cols["l2"].append(l2[m])
        cols["linf"].append(li[m])
        kind += [nm[j] for j in m.nonzero()[:, 1].tolist()]
    out = {k: torch.cat(v) for k, v in cols.items()}
    out["kind"] = kind
    return out
