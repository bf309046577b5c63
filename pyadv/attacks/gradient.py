"""The gradient family, first part: fast gradient sign / value (Goodfellow et al. 2015; Rozsa
et al. 2016, §4.1; Possas's "inverse" and "least likely of the top 5" directions), the basic
iterative method and the iterative least-likely class method (Kurakin et al. 2017, as in the
Raissi notes, with Clip_{X,eps}), and PGD (Madry et al. 2018).

Every step is one forward and one backward pass per active image through the runner, in the
search's precision (``precision``; successes claimed beyond the runner's band); images are in
[0, 1] (eps, alpha in the same units: 8/255 is eight grey levels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ._base import (Attack, CommonOptions, RawResult, bool_option, int_option, keyed_generator, number_option,
                    option_error, register)
from ._losses import cross_entropy, cw_margin, dlr

DIRECTIONS = ("inverse", "least_likely_top5")
NORMS = ("linf", "l2")
LOSSES = ("ce", "cw")
STOPS = ("none", "first_success")


_NORM_ALIASES = {"linf": "linf", "inf": "linf", "l2": "l2", "2": "l2"}


def norm_option(options) -> None:
    """Normalises ``options.norm``: "linf" or "l2", also spelt as other libraries do (float('inf')
    or 2 as adv-lib and ART, "Linf" / "L2" as torchattacks)."""
    v = options.norm
    key = ("inf" if v == float("inf") else str(int(v)) if v == 2 else None) \
        if isinstance(v, (int, float)) and not isinstance(v, bool) else v.lower() if isinstance(v, str) else None
    if key not in _NORM_ALIASES:
        raise option_error("norm", v, "'linf' (or inf, 'Linf') or 'l2' (or 2, 'L2')")
    object.__setattr__(options, "norm", _NORM_ALIASES[key])


def _direction_classes(model_probs, y, target, direction):
    """(class whose loss the step uses, sign): +1 raises the loss of y (inverse), -1 lowers the
    loss of the target or of the least likely of the top 5 (moves towards it)."""
    if target is not None:
        return target, -1.0
    if direction == "inverse":
        return y, 1.0
    return model_probs.topk(5 if model_probs.shape[1] >= 5 else model_probs.shape[1], 1).indices[:, -1], -1.0


def _normalise(v, norm):
    """v scaled per image to size 1 in the L-inf ("linf") or L2 ("l2") norm (0 stays 0)."""
    flat = v.flatten(1)
    size = flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)
    return v / size.clamp_min(1e-30).view(-1, *[1] * (v.dim() - 1))


def _improves(ok, loss, best_ok, best_loss):
    """Where a point beats the best so far: a success over a failure, else a higher loss."""
    return (ok & ~best_ok) | ((ok == best_ok) & (loss > best_loss))


def _grad(runner, x, cls, rows, loss):
    return runner.loss_grad(x, rows, loss, cls)


@dataclass(frozen=True)
class FGSOptions(CommonOptions):
    """eps: the step's size (L-inf: every pixel moves by eps; L2 for FGV with norm="l2").
    direction: "inverse" (away from the true label, Possas's inverse method) or
    "least_likely_top5" (towards the least likely of the top-5 classes); a call's target
    overrides it (a step towards the target).
    minimal: instead of one step of size eps, Rozsa et al.'s search for the closest
    adversarial along the direction (§4.3): steps start, start*grow, ... until the label
    changes (a failure, with its last step, if the direction saturates the box first), then
    ``bisect`` halvings of the last bracket. With quantize=True the steps are whole grey
    levels (k/255), as the paper works on integer pixels."""
    eps: float = 8 / 255
    direction: str = "inverse"
    minimal: bool = False
    start: float = 1 / 255
    grow: float = 2.0
    bisect: int = 12

    def __post_init__(self):
        super().__post_init__()
        number_option("eps", self.eps)
        if self.direction not in DIRECTIONS:
            raise option_error("direction", self.direction, f"one of {DIRECTIONS}")
        bool_option("minimal", self.minimal)
        number_option("start", self.start, positive=True)
        if not (isinstance(self.grow, (int, float)) and self.grow > 1):
            raise option_error("grow", self.grow, "a number > 1")
        int_option("bisect", self.bisect, 0)


@register("fgs")
class FGS(Attack):
    """Fast gradient sign (Goodfellow et al. 2015): x + s eps sign(grad J(x, c)), clipped to
    [0, 1], with (c, s) from ``direction`` or the call's target."""

    Options = FGSOptions

    def _scale(self, g):
        return g.sign()

    def _run(self, x, y, target, runner, index):
        o = self.options
        rows = torch.arange(len(x), device=x.device)
        # only the least-likely-of-top-5 direction needs the clean images' probabilities
        probs = runner.probs(x, rows, exact=True) if target is None and o.direction != "inverse" else None
        cls, sign = _direction_classes(probs, y, target, o.direction)
        g = _grad(runner, x, cls, rows, cross_entropy)
        u = sign * self._scale(g)
        if not o.minimal:
            adv = (x + o.eps * u).clamp(0, 1)
            return RawResult(adv=adv, iterations=torch.ones(len(x), dtype=torch.long, device=x.device),
                             extras={"step_class": cls})
        adv, scale, below, iters, _, _ = minimal_along(runner, x, y, target, u, start=o.start, grow=o.grow,
                                                    bisect=o.bisect, integer=o.quantize)
        return RawResult(adv=adv, iterations=iters, extras={"step_class": cls, "scale": scale, "scale_below": below,
                                                              "direction": u})


def step_image(x, u, s, integer=False):
    """The image at step s [n] along direction u from x, clipped to [0, 1]. ``integer``: s counts
    grey levels (a pixel with |u| = 1 moves by s levels) and the image is whole levels,
    round(255 x + s u) / 255."""
    view = s.to(x.dtype).view(-1, *[1] * (x.dim() - 1))
    if integer:
        return ((x * 255 + view * u).round() / 255).clamp(0, 1)
    return (x + view * u).clamp(0, 1)


def minimal_along(runner, x, y, goal, u, *, start, grow, bisect, integer=False, owners=None):
    """Rozsa et al. (2016), §4.3: the closest adversarial along direction u [N, ...] per row.

    Rows are (image, direction) pairs: x [N, ...] (an image may repeat), y [N], goal [N] (the
    class to reach, -1: any class but y, or None for all -1), owners [N] the runner's source
    image of each row (default: row i is image i). Steps s = start, start*grow, ... (grey
    levels with ``integer``, see :func:`step_image`) until the image is adversarial, or stops
    changing (the direction has saturated the box: a failure, returned with its last step);
    then ``bisect`` halvings of [s_prev, s] keep the smallest adversarial step. Each row leaves
    the batch when its search ends. Returns (adv, scale [N] (NaN on failure), the largest step
    found not adversarial [N], forward passes [N], the model's class at adv [N] (-1 on failure) and
    its probability [N] (NaN on failure))."""
    N = len(x)
    dev = x.device
    owners = torch.arange(N, device=dev) if owners is None else owners
    goal = torch.full((N,), -1, dtype=torch.long, device=dev) if goal is None else goal

    def render(s, rows):
        return step_image(x[rows], u[rows], s, integer)

    pred = torch.full((N,), -1, dtype=torch.long, device=dev)  # the class at each row's returned step
    prob = torch.full((N,), math.nan, device=dev)              # and the model's probability of it

    def adversarial(img, rows):
        pr = runner.probs(img, owners[rows], exact=True)
        top, p = pr.max(1)
        g = goal[rows]
        ok = torch.where(g >= 0, p == g, p != y[rows])
        pred[rows[ok]] = p[ok]
        prob[rows[ok]] = top[ok].float()
        return ok

    s0 = start * (255 if integer else 1)
    lo = torch.zeros(N, dtype=torch.float64, device=dev)
    hi = torch.full((N,), math.nan, dtype=torch.float64, device=dev)
    last = x.clone()
    iters = torch.zeros(N, dtype=torch.long, device=dev)
    active = torch.arange(N, device=dev)
    s = torch.full((N,), s0, dtype=torch.float64, device=dev)
    prev = x.clone()
    while len(active):
        img = render(s[active], active)
        iters[active] += 1
        ok = adversarial(img, active)
        stuck = (img == prev[active]).flatten(1).all(1) & ~ok
        hi[active[ok]] = s[active[ok]]
        last[active[stuck]] = img[stuck]
        pred[active[stuck]] = -1
        prob[active[stuck]] = math.nan
        prev[active] = img
        go = ~ok & ~stuck
        lo[active[go]] = s[active[go]]
        s[active[go]] *= grow
        active = active[go]
    found = ~hi.isnan()
    active = found.nonzero().flatten()
    for _ in range(bisect):
        if not len(active):
            break
        mid = (lo[active] + hi[active]) / 2
        img = render(mid, active)
        iters[active] += 1
        ok = adversarial(img, active)
        hi[active[ok]] = mid[ok]
        lo[active[~ok]] = mid[~ok]
        if integer:  # whole grey levels: stop when the bracket holds no other level
            active = active[(hi[active] - lo[active]) > 1]
    out = last.clone()
    rows = found.nonzero().flatten()
    if len(rows):
        out[rows] = render(hi[rows], rows)
    lo = lo.masked_fill(~found, math.nan)
    return out, hi.float(), lo.float(), iters, pred, prob


@dataclass(frozen=True)
class FGVOptions(FGSOptions):
    """norm: how the raw gradient is scaled to size eps: "linf" (its largest component
    becomes eps) or "l2" (its L2 norm becomes eps)."""
    norm: str = "linf"

    def __post_init__(self):
        super().__post_init__()
        norm_option(self)


@register("fgv")
class FGV(FGS):
    """Fast gradient value (Rozsa et al. 2016, §4.1): the raw gradient, not its sign, scaled to
    the given L-inf or L2 size."""

    Options = FGVOptions

    def _scale(self, g):
        return _normalise(g, self.options.norm)


@dataclass(frozen=True)
class ILLCOptions(CommonOptions):
    """eps: the L-inf ball Clip_{X,eps}; alpha: the step (default 1/255, Kurakin et al.);
    steps: None for Kurakin et al.'s min(eps*255 + 4, 1.25 eps*255), rounded down (at least 1)."""
    eps: float = 8 / 255
    alpha: float = 1 / 255
    steps: Optional[int] = None

    def __post_init__(self):
        super().__post_init__()
        number_option("eps", self.eps)
        number_option("alpha", self.alpha, positive=True)
        if self.steps is not None:  # None: Kurakin et al.'s schedule
            int_option("steps", self.steps, 1)

    def n_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        e = self.eps * 255
        return max(1, int(min(e + 4, 1.25 * e)))  # rounded down, as torchattacks does


@dataclass(frozen=True)
class BIMOptions(ILLCOptions):
    """direction: "inverse" (away from the true label) or "least_likely_top5" (towards the
    least likely of the clean image's top-5 classes), Possas's two iterative variants."""
    direction: str = "inverse"

    def __post_init__(self):
        super().__post_init__()
        if self.direction not in DIRECTIONS:
            raise option_error("direction", self.direction, f"one of {DIRECTIONS}")


def clip_x_eps(adv, x, eps):
    """Clip_{X,eps}: within eps of x per component, and inside [0, 1]."""
    return torch.minimum(torch.maximum(adv, x - eps), x + eps).clamp(0, 1)


@register("bim")
class BIM(Attack):
    """Basic iterative method (Kurakin et al. 2017): X_{N+1} = Clip_{X,eps}{X_N + alpha
    sign(grad J(X_N, y_true))}; towards the least likely of the top 5 (``direction``) or a
    call's target c, X_N - alpha sign(grad J(X_N, c))."""

    Options = BIMOptions

    def _classes(self, x, y, target, runner, rows):
        probs = runner.probs(x, rows, exact=True) if target is None and self.options.direction != "inverse" else None
        return _direction_classes(probs, y, target, self.options.direction)

    def _run(self, x, y, target, runner, index):
        o = self.options
        rows = torch.arange(len(x), device=x.device)
        cls, sign = self._classes(x, y, target, runner, rows)
        runner.expect(len(x) * o.n_steps())
        adv = x.clone()
        for _ in range(o.n_steps()):
            g = _grad(runner, adv, cls, rows, cross_entropy)
            adv = clip_x_eps(adv + sign * o.alpha * g.sign(), x, o.eps)
        return RawResult(adv=adv, iterations=torch.full((len(x),), o.n_steps(), device=x.device),
                         extras={"step_class": cls})


@register("illc")
class ILLC(BIM):
    """Iterative least-likely class (Kurakin et al. 2017): X_{N+1} = Clip_{X,eps}{X_N - alpha
    sign(grad J(X_N, y_LL))}, y_LL the clean image's least likely class; success means
    misclassified (a call's target replaces y_LL and then success means reaching it)."""

    Options = ILLCOptions

    def _classes(self, x, y, target, runner, rows):
        if target is not None:
            return target, -1.0
        return runner.probs(x, rows, exact=True).argmin(1), -1.0


@dataclass(frozen=True)
class PGDOptions(CommonOptions):
    """Madry et al. (2018). norm "linf" or "l2" ball of radius eps; alpha the step (default
    2.5 eps / steps, Madry et al.'s rule: enough to cross the ball and come back); steps; random_start (uniform in the L-inf ball, or
    uniform direction and radius in the L2 ball); restarts (the best point per image is
    kept); loss "ce" or "cw" (the C&W margin); stop "none" (every step, the highest-loss point,
    as Madry et al.) or "first_success" (an image leaves the batch once misclassified or at its
    target)."""
    eps: float = 8 / 255
    norm: str = "linf"
    alpha: Optional[float] = None
    steps: int = 10
    random_start: bool = True
    restarts: int = 1
    loss: str = "ce"
    stop: str = "none"

    def __post_init__(self):
        super().__post_init__()
        number_option("eps", self.eps)
        if self.alpha is not None:
            number_option("alpha", self.alpha, positive=True)
        norm_option(self)
        for name in ("steps", "restarts"):
            v = getattr(self, name)
            int_option(name, v, 1)
        if self.loss not in LOSSES:
            raise option_error("loss", self.loss, f"one of {LOSSES}")
        if self.stop not in STOPS:
            raise option_error("stop", self.stop, f"one of {STOPS}")
        bool_option("random_start", self.random_start)





@register("pgd")
class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018) in the L-inf or L2 ball, untargeted
    (ascend the loss of y) or targeted (descend the loss of the target), with restarts."""

    Options = PGDOptions

    def _project(self, adv, x):
        o = self.options
        if o.norm == "linf":
            return clip_x_eps(adv, x, o.eps)
        d = adv - x
        n = d.flatten(1).norm(dim=1).clamp_min(1e-12)
        d = d * (o.eps / n).clamp(max=1.0).view(-1, *[1] * (d.dim() - 1))
        return (x + d).clamp(0, 1)

    def _start(self, x, index, restart):
        o = self.options
        if not o.random_start:
            return x.clone()
        out = torch.empty_like(x)
        for r, k in enumerate(index.tolist()):
            gen = keyed_generator(o.seed, k, restart)
            u = torch.rand(x[r].shape, generator=gen, dtype=torch.float64)
            if o.norm == "linf":
                d = (2 * u - 1) * o.eps
            else:
                g = torch.randn(x[r].shape, generator=gen, dtype=torch.float64)
                d = g / g.norm() * o.eps * float(torch.rand((), generator=gen, dtype=torch.float64))
            out[r] = (x[r] + d.to(x)).clamp(0, 1)
        return out

    def _run(self, x, y, target, runner, index):
        o = self.options
        B = len(x)
        alpha = o.alpha if o.alpha is not None else 2.5 * o.eps / o.steps
        cls, sign = (y, 1.0) if target is None else (target, -1.0)
        lossf = cross_entropy if o.loss == "ce" else cw_margin
        runner.expect(B * (o.steps + 1) * o.restarts)
        best = x.clone()
        best_loss = torch.full((B,), -math.inf, device=x.device)
        best_ok = torch.zeros(B, dtype=torch.bool, device=x.device)
        iters = torch.zeros(B, dtype=torch.long, device=x.device)
        for restart in range(o.restarts):
            active = (~best_ok).nonzero().flatten() if o.stop == "first_success" else torch.arange(B, device=x.device)
            if not len(active):
                break
            adv = self._start(x[active], index[active], restart)
            for step in range(o.steps + 1):
                if not len(active):
                    break
                # One forward serves the gradient of this point and its loss and success.
                if step < o.steps:
                    g, z = runner.loss_grad(adv, active, lossf, cls[active], return_logits=True)
                else:
                    z = runner.logits(adv, active)  # the last point: no step follows
                z = z.float()
                val = sign * lossf(z, cls[active])  # the attack's own loss; higher: better for it
                ok = runner.hit(z, y[active], None if target is None else target[active])
                better = _improves(ok, val, best_ok[active], best_loss[active])
                sel = active[better]
                best[sel] = adv[better]
                best_loss[sel] = val[better]
                best_ok[sel] = ok[better]
                if o.stop == "first_success":
                    keep = ~ok
                    active, adv = active[keep], adv[keep]
                    if step < o.steps:
                        g = g[keep]
                if step < o.steps and len(active):
                    d = g.sign() if o.norm == "linf" else _normalise(g, "l2")
                    adv = self._project(adv + sign * alpha * d, x[active])
                    iters[active] += 1
        return RawResult(adv=best, iterations=iters, search_success=best_ok)


# --- APGD (Croce and Hein 2020) ------------------------------------------------------------------

def apgd_checkpoints(n_iter: int) -> list[int]:
    """The iterations at which APGD may halve its step: w_j = ceil(p_j N) with p_0 = 0,
    p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), while p_j <= 1."""
    p = [0.0, 0.22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if nxt > 1:
            break
        p.append(nxt)
    out = []
    for v in p:
        w = math.ceil(round(v * n_iter, 9))
        if not out or w > out[-1]:
            out.append(w)
    return out


def apgd_halve(raised, span, rho, eta_last, eta, f_max_last, f_max):
    """APGD's rule at a checkpoint w_j (span = w_j - w_{j-1} iterations since the last one):
    halve where the loss rose in fewer than rho * span of them (condition 1), or where
    neither the step nor the best loss changed since w_{j-1} (condition 2)."""
    return (raised < rho * span) | ((eta_last == eta) & (f_max_last == f_max))


@dataclass(frozen=True)
class APGDOptions(CommonOptions):
    """Croce and Hein (2020). norm "linf" or "l2", eps, steps (N_iter, default 100), loss
    "ce" or "dlr" (targeted runs use the targeted DLR / the target's cross-entropy), rho 0.75,
    momentum 0.75; the step starts at 2 eps and halves at the checkpoints where fewer than rho
    of the steps since the last one raised the loss, or where neither the step nor the best
    loss changed; after a halving the iterate restarts from the best point."""
    eps: float = 8 / 255
    norm: str = "linf"
    steps: int = 100
    loss: str = "ce"
    rho: float = 0.75
    momentum: float = 0.75
    random_start: bool = True
    stop: str = "none"

    def __post_init__(self):
        super().__post_init__()
        number_option("eps", self.eps)
        norm_option(self)
        int_option("steps", self.steps, 1)
        if self.loss not in ("ce", "dlr"):
            raise option_error("loss", self.loss, "'ce' or 'dlr'")
        for name in ("rho", "momentum"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 < v <= 1):
                raise option_error(name, v, "a number in (0, 1]")
        if self.stop not in STOPS:
            raise option_error("stop", self.stop, f"one of {STOPS}")


@register("apgd")
class APGD(PGD):
    """Auto-PGD (Croce and Hein 2020), the step-size-free PGD at the core of AutoAttack; one
    forward and backward pass per image per iteration, the best point per image returned."""

    Options = APGDOptions

    def _run(self, x, y, target, runner, index):
        o = self.options
        B = len(x)
        dev = x.device
        targeted = target is not None
        if o.loss == "dlr":
            def lossf(z, rows):
                return dlr(z, y[rows], target[rows] if targeted else None)
        else:
            def lossf(z, rows):
                ce = cross_entropy(z, target[rows] if targeted else y[rows])
                return -ce if targeted else ce
        checkpoints = set(apgd_checkpoints(o.steps)[1:])
        bcast = [1] * (x.dim() - 1)

        def step_dir(g):
            return g.sign() if o.norm == "linf" else _normalise(g, "l2")

        rows = torch.arange(B, device=dev)
        runner.expect(B * (o.steps + 1))
        x0 = self._start(x, index, 0) if o.random_start else x.clone()
        g, z = runner.loss_grad(x0, rows, lossf, rows, return_logits=True)
        f = lossf(z, rows)
        ok = runner.hit(z, y, target)
        # The best point's gradient is kept too: a restart from it costs no extra pass.
        best, best_f, best_ok, best_g = x0.clone(), f.clone(), ok.clone(), g.clone()
        eta = torch.full((B,), 2.0 * o.eps, device=dev)
        x_prev, x_cur, g_cur, f_cur = x0, x0, g, f
        iters = torch.zeros(B, dtype=torch.long, device=dev)
        raised = torch.zeros(B, device=dev)                 # loss increases since the last checkpoint
        f_max_at_last = best_f.clone()
        eta_at_last = eta.clone()
        last_w = 0
        active = rows.clone()
        if o.stop == "first_success":
            keep = ~ok
            active, x_prev, x_cur, g_cur, f_cur = active[keep], x_prev[keep], x_cur[keep], g_cur[keep], f_cur[keep]
        for k in range(o.steps):
            if not len(active):
                break
            e = eta[active].view(-1, *bcast)
            xa = x[active]
            zk = self._project(x_cur + e * step_dir(g_cur), xa)
            if k == 0:
                x_new = zk
            else:
                x_new = self._project(x_cur + o.momentum * (zk - x_cur) + (1 - o.momentum) * (x_cur - x_prev), xa)
            g_new, logit = runner.loss_grad(x_new, active, lossf, active, return_logits=True)
            f_new = lossf(logit, active)
            iters[active] += 1
            ok = runner.hit(logit, y[active], target[active] if targeted else None)
            raised[active] += (f_new > f_cur).float()
            better = _improves(ok, f_new, best_ok[active], best_f[active])
            sel = active[better]
            best[sel], best_f[sel], best_ok[sel], best_g[sel] = x_new[better], f_new[better], ok[better], g_new[better]
            x_prev, x_cur, g_cur, f_cur = x_cur, x_new, g_new, f_new
            if k + 1 in checkpoints:
                halve = apgd_halve(raised[active], k + 1 - last_w, o.rho, eta_at_last[active], eta[active],
                                   f_max_at_last[active], best_f[active])
                a_h = active[halve]
                eta[a_h] = eta[a_h] / 2
                # the halved images go on from their best point
                if bool(halve.any()):
                    x_cur, x_prev, g_cur, f_cur = x_cur.clone(), x_prev.clone(), g_cur.clone(), f_cur.clone()
                    x_cur[halve] = best[a_h]
                    x_prev[halve] = best[a_h]
                    g_cur[halve] = best_g[a_h]
                    f_cur[halve] = best_f[a_h]
                raised[active] = 0
                f_max_at_last[active] = best_f[active]
                eta_at_last[active] = eta[active]
                last_w = k + 1
            if o.stop == "first_success":
                keep = ~ok
                active, x_prev, x_cur, g_cur, f_cur = active[keep], x_prev[keep], x_cur[keep], g_cur[keep], f_cur[keep]
        return RawResult(adv=best, iterations=iters, search_success=best_ok, extras={"final_step": eta})
