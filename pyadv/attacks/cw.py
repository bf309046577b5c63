"""Carlini and Wagner (2017), "Towards Evaluating the Robustness of Neural Networks" (the Raissi
notes, paper 003): the L2, L-inf and L0 attacks, batched with a per-image state.

Every image runs its own schedule: its own constant c and binary-search bracket, its own Adam
state and iteration count, its own early abort. One gradient step of every image still in the
search is one forward and one backward pass through the runner; an image whose last c-step
ends leaves the batch at once, while the others go on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._base import Attack, CommonOptions, RawResult, bool_option, int_option, number_option, option_error, register
from ._losses import cw_margin

#: the constant's upper bound while no success has bracketed it (Carlini and Wagner's 1e10)
_NO_BOUND = 1e10


class RowAdam:
    """Adam (Kingma and Ba 2015) over a batch whose rows run their own step counts: each row's
    bias correction uses its own t, and ``reset(rows)`` starts rows afresh."""

    def __init__(self, like: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.m = torch.zeros_like(like)
        self.v = torch.zeros_like(like)
        self.t = torch.zeros(len(like), dtype=torch.long, device=like.device)
        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps

    def step(self, rows: torch.Tensor, param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """param[rows] after one step along -grad (param and grad hold the rows' values)."""
        self.t[rows] += 1
        t = self.t[rows].to(grad.dtype).view(-1, *[1] * (grad.dim() - 1))
        m = self.m[rows].mul_(self.b1).add_(grad, alpha=1 - self.b1)
        v = self.v[rows].mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        self.m[rows], self.v[rows] = m, v
        mhat = m / (1 - self.b1 ** t)
        vhat = v / (1 - self.b2 ** t)
        return param - self.lr * mhat / (vhat.sqrt() + self.eps)

    def reset(self, rows: torch.Tensor) -> None:
        self.m[rows] = 0
        self.v[rows] = 0
        self.t[rows] = 0


def cw_objective_margin(logits: torch.Tensor, cls: torch.Tensor, targeted: bool) -> torch.Tensor:
    """The margin that C&W's f clamps: targeted max_{i != t} Z_i - Z_t; untargeted
    Z_y - max_{i != y} Z_i. Negative: the attack's goal holds (by that much)."""
    m = cw_margin(logits, cls)
    return m if targeted else -m


def to_tanh_space(x: torch.Tensor) -> torch.Tensor:
    """w with 1/2 (tanh(w) + 1) = x, pulled in by 1e-6 so that 0 and 1 stay finite."""
    return torch.atanh((2 * x - 1) * (1 - 1e-6))


def from_tanh_space(w: torch.Tensor) -> torch.Tensor:
    return (torch.tanh(w) + 1) / 2


def update_constant(c, lo, hi, found):
    """Carlini and Wagner's binary search over c, per image: a success bounds c from above
    (c moves to the middle of the bracket); a failure bounds it from below (the middle, or 10 c
    while nothing has bounded it above). Returns (c, lo, hi)."""
    hi = torch.where(found, torch.minimum(hi, c), hi)
    lo = torch.where(found, lo, torch.maximum(lo, c))
    bounded = hi < 1e9
    c = torch.where(bounded, (lo + hi) / 2, torch.where(found, c, c * 10))
    return c, lo, hi


class PerImageSearch:
    """What every C&W variant keeps per image: w (x' = 1/2 (tanh(w) + 1)) with its Adam state,
    the constant c, the steps taken at the current c and in all, the best point and whether
    the search found an adversarial."""

    def __init__(self, x: torch.Tensor, lr: float, c: float):
        B, dev = len(x), x.device
        self.w = to_tanh_space(x)
        self.adam = RowAdam(self.w, lr)
        self.c = torch.full((B,), float(c), device=dev, dtype=torch.float64)
        self.it = torch.zeros(B, dtype=torch.long, device=dev)
        self.iters = torch.zeros(B, dtype=torch.long, device=dev)
        self.best = x.clone()
        self.found = torch.zeros(B, dtype=torch.bool, device=dev)

    def double_spent(self, stepped: torch.Tensor, steps: int) -> torch.Tensor:
        """The rows of ``stepped`` that used up their steps at this c: c doubles, the step count
        and Adam start afresh. Returns them."""
        spent = stepped[self.it[stepped] >= steps]
        self.c[spent] *= 2
        self.it[spent] = 0
        self.adam.reset(spent)
        return spent


@dataclass(frozen=True)
class CWL2Options(CommonOptions):
    """Carlini and Wagner's L2 attack: minimise ||delta||_2^2 + c f(x + delta) over w, with
    x + delta = 1/2 (tanh(w) + 1) (the box holds by construction) and
    f = max(max_{i != t} Z_i - Z_t, -kappa) on the logits (untargeted: max(Z_y - max_{i != y}
    Z_i, -kappa)). Defaults are the paper's: kappa 0, c starting at 1e-3, 9 binary-search
    steps over c per image, up to 10 000 Adam steps (lr 0.01) per c, each c-step ending early
    (``abort_early``) when at one of its ten checkpoints the loss is not below 0.9999 times
    the last checkpoint's. With 10 or more search steps the last one uses the upper bound
    (the paper's "repeat"). Slow at these defaults on a CPU: steps=100-1000 is the usual
    trade."""
    kappa: float = 0.0
    c: float = 1e-3
    search_steps: int = 9
    steps: int = 10000
    lr: float = 0.01
    abort_early: bool = True

    def __post_init__(self):
        super().__post_init__()
        _kappa_option(self.kappa)
        number_option("c", self.c, positive=True)
        int_option("search_steps", self.search_steps, 1)
        int_option("steps", self.steps, 1)
        number_option("lr", self.lr, positive=True)
        bool_option("abort_early", self.abort_early)


@register("cw_l2")
class CWL2(Attack):
    """Carlini-Wagner L2 (Carlini and Wagner 2017). Returns per image the adversarial of least
    L2 found over the whole search (the clean image where none was found); ``extras``:
    ``const`` (the last c tried), ``best_const`` (the c of the returned image, NaN on failure),
    ``margin`` (its margin as in f before the clamp, <= -kappa on success)."""

    Options = CWL2Options

    def _run(self, x, y, target, runner, index):
        o = self.options
        B = len(x)
        dev = x.device
        targeted = target is not None
        cls = target if targeted else y
        runner.expect(B * o.steps * o.search_steps)
        odds = _odds(runner, targeted)
        state = PerImageSearch(x, o.lr, o.c)
        w, adam, c, it, iters, best = state.w, state.adam, state.c, state.it, state.iters, state.best
        found = state.found  # here: this c-step found an adversarial
        w0 = w.clone()
        lo = torch.zeros(B, device=dev, dtype=torch.float64)
        hi = torch.full((B,), _NO_BOUND, device=dev, dtype=torch.float64)
        outer = torch.zeros(B, dtype=torch.long, device=dev)
        prev = torch.full((B,), math.inf, device=dev, dtype=torch.float64)
        best_l2 = torch.full((B,), math.inf, device=dev, dtype=x.dtype)
        best_const = torch.full((B,), math.nan, device=dev, dtype=torch.float64)
        best_margin = torch.full((B,), math.nan, device=dev)
        check = max(1, o.steps // 10)
        active = torch.arange(B, device=dev)

        def f_loss(z, const, cl):
            return const * cw_objective_margin(odds(z, cl), cl, targeted).clamp_min(-o.kappa)

        while len(active):
            xa, wa = x[active], w[active]
            adv = from_tanh_space(wa)
            ca = c[active].to(x.dtype)
            g, z = runner.loss_grad(adv, active, f_loss, ca, cls[active], return_logits=True)
            margin = cw_objective_margin(odds(z, cls[active]), cls[active], targeted)
            d = adv - xa
            l2sq = d.flatten(1).pow(2).sum(1)
            loss = (l2sq + ca * margin.clamp_min(-o.kappa)).double()
            # success as the paper's compare(): the goal holds by more than kappa
            ok = margin < -o.kappa
            found[active] |= ok
            better = ok & (l2sq < best_l2[active])
            sel = active[better]
            best_l2[sel] = l2sq[better]
            best[sel] = adv[better].detach()
            best_const[sel] = c[sel]
            best_margin[sel] = margin[better].float()
            # Adam on w: d/dw [||x' - x||^2 + c f(x')] = (2 (x' - x) + c df/dx') * (1 - tanh(w)^2) / 2
            gw = (g + 2 * d) * (1 - (2 * adv - 1).pow(2)) / 2
            w[active] = adam.step(active, wa, gw)
            # early abort at the c-step's checkpoints (iteration 0, check, 2 check, ...)
            at_check = (it[active] % check) == 0
            stalled = at_check & (loss > prev[active] * 0.9999) & o.abort_early
            prev[active] = torch.where(at_check, loss, prev[active])
            it[active] += 1
            iters[active] += 1
            ended = stalled | (it[active] >= o.steps)
            if ended.any():
                e = active[ended]
                c[e], lo[e], hi[e] = update_constant(c[e], lo[e], hi[e], found[e])
                outer[e] += 1
                # the paper's "repeat": with 10 or more search steps the last one uses the upper bound
                if o.search_steps >= 10:
                    last = e[outer[e] == o.search_steps - 1]
                    c[last] = hi[last]
                w[e] = w0[e]
                adam.reset(e)
                it[e] = 0
                prev[e] = math.inf
                found[e] = False
                active = active[outer[active] < o.search_steps]
        success = torch.isfinite(best_l2)
        return RawResult(adv=best, iterations=iters, search_success=success,
                         extras={"const": c.float(), "best_const": best_const.float(), "margin": best_margin})


def _odds(runner, targeted: bool):
    """logits, cls -> the logits the search judges: in a reduced precision with the band set
    against the attack (``ModelRunner.handicap``), so that kappa is met beyond it and the check
    in the model's precision confirms what the search keeps; float32 logits as they are."""
    return lambda z, cls: runner.handicap(z, cls, cls if targeted else None).float()


def _hinge(logits, cls, targeted, kappa):
    """(max_{i != t} Z_i - Z_t + kappa)^+ (untargeted: (Z_y - max_{i != y} Z_i + kappa)^+): zero
    once the goal holds by kappa."""
    return (cw_objective_margin(logits, cls, targeted) + kappa).clamp_min(0)


@dataclass(frozen=True)
class _CWDoublingOptions(CommonOptions):
    """The options C&W's L-inf and L0 attacks share: the margin kappa, a constant c doubled up
    to max_c while a solve fails, Adam steps and learning rate per c."""
    kappa: float = 0.0
    c: float = 1e-3
    max_c: float = 2e6
    steps: int = 1000
    lr: float = 1e-2

    def __post_init__(self):
        super().__post_init__()
        _kappa_option(self.kappa)
        number_option("c", self.c, positive=True)
        number_option("max_c", self.max_c, positive=True)
        if self.max_c < self.c:
            raise option_error("max_c", self.max_c, f"a number >= c ({self.c})")
        int_option("steps", self.steps, 1)
        number_option("lr", self.lr, positive=True)


@dataclass(frozen=True)
class CWLinfOptions(_CWDoublingOptions):
    """Carlini and Wagner's L-inf attack: minimise c f(x') + sum_i max(|x'_i - x_i| - tau, 0) over
    w (x' = 1/2 (tanh(w) + 1)), f = (margin + kappa)^+. Per image: at each tau, up to ``steps``
    Adam steps (lr 5e-3) per c; a point whose loss is below 1e-4 c solves this tau (the goal
    holds and no component exceeds tau by more than a trace); then tau becomes 0.9 min(tau,
    the solution's L-inf) and the search goes on from that point; an unsolved c doubles, up to
    ``max_c``, after which the image keeps its last solution. From tau = 1 and c = 1e-5 down
    to tau <= 1/256, the paper's constants."""
    c: float = 1e-5
    max_c: float = 20.0
    lr: float = 5e-3
    tau_factor: float = 0.9

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.tau_factor, (int, float)) and 0 < self.tau_factor < 1):
            raise option_error("tau_factor", self.tau_factor, "a number in (0, 1)")


def _kappa_option(kappa) -> None:
    if not (isinstance(kappa, (int, float)) and not isinstance(kappa, bool) and math.isfinite(kappa) and kappa >= 0):
        raise option_error("kappa", kappa, "a finite number >= 0 (the confidence margin kappa)")


@register("cw_linf")
class CWLinf(Attack):
    """Carlini-Wagner L-inf (Carlini and Wagner 2017), batched with a per-image tau, c, Adam
    state and step count. Returns each image's last solution (smallest tau reached; the clean
    image where none); ``extras``: ``tau`` (the last tau tried), ``const``."""

    Options = CWLinfOptions

    def _run(self, x, y, target, runner, index):
        o = self.options
        B, dev = len(x), x.device
        targeted = target is not None
        cls = target if targeted else y
        state = PerImageSearch(x, o.lr, o.c)
        w, adam, c, it, iters, best, found = (state.w, state.adam, state.c, state.it, state.iters, state.best,
                                              state.found)
        tau = torch.ones(B, device=dev, dtype=x.dtype)
        runner.expect(B * o.steps)
        odds = _odds(runner, targeted)
        active = torch.arange(B, device=dev)

        def f_loss(z, const, cl):
            return const * _hinge(odds(z, cl), cl, targeted, o.kappa)

        view = (-1,) + (1,) * (x.dim() - 1)
        while len(active):
            xa, wa = x[active], w[active]
            adv = from_tanh_space(wa)
            ca, ta = c[active].to(x.dtype), tau[active]
            g, z = runner.loss_grad(adv, active, f_loss, ca, cls[active], return_logits=True)
            d = adv - xa
            over = (d.abs() - ta.view(view)).clamp_min(0)
            loss = ca * _hinge(odds(z, cls[active]), cls[active], targeted, o.kappa).to(x.dtype) + over.flatten(1).sum(1)
            solved = loss < 1e-4 * ca
            # a solution: keep it, tighten tau below its L-inf, restart Adam from there
            if solved.any():
                s = active[solved]
                best[s] = adv[solved].detach()
                found[s] = True
                linf = d[solved].flatten(1).abs().amax(1)
                tau[s] = torch.minimum(tau[s], linf) * o.tau_factor
                adam.reset(s)
                it[s] = 0
            # the others take a step: d/dw [c f + sum (|d| - tau)^+]
            go = ~solved
            gx = g + d.sign() * (d.abs() > ta.view(view)).to(d.dtype)
            gw = gx * (1 - (2 * adv - 1).pow(2)) / 2
            stepped = active[go]
            w[stepped] = adam.step(stepped, wa[go], gw[go])
            it[stepped] += 1
            iters[active] += 1
            # an unsolved c doubles after its steps; past max_c the image is done
            state.double_spent(stepped, o.steps)
            done = (tau[active] <= 1 / 256) | (c[active] > o.max_c)
            active = active[~done]
        return RawResult(adv=best, iterations=iters, search_success=found,
                         extras={"tau": tau.float(), "const": c.float()})


@dataclass(frozen=True)
class CWL0Options(_CWDoublingOptions):
    """Carlini and Wagner's L0 attack: repeated L2 solves (minimise ||delta||_2^2 + c f over the
    pixels still allowed to change, f = (margin + kappa)^+, Adam lr 1e-2, up to ``steps``
    steps per c, c doubling from 1e-3 up to ``max_c`` until a solve succeeds, warm-started from
    the last solution); after each success the allowed pixels with the smallest
    |delta| |gradient| (summed over channels) are frozen at their clean values: at least one,
    then on while their total change stays below 0.01, at most 0.3 sqrt(pixels changed). The
    image ends at the first failed solve with the last solution, the paper's procedure."""
    # the defaults are the shared ones: kappa 0, c 1e-3, max_c 2e6, 1000 steps, lr 1e-2


def freeze_counts(sorted_change: torch.Tensor, n_free: torch.Tensor, eq_count: torch.Tensor) -> torch.Tensor:
    """How many of each row's allowed pixels, sorted by ascending change (``sorted_change``
    [n, P], the first ``n_free`` of a row allowed), the L0 attack freezes: the first always,
    then on until one whose change exceeds 0.01 (frozen too) or 0.3 sqrt(pixels changed) of them."""
    cap = (0.3 * eq_count.clamp(min=0).double().sqrt()).ceil().long().clamp(min=1)
    big = (sorted_change > 0.01) & (torch.arange(sorted_change.shape[1], device=n_free.device) < n_free[:, None])
    first_big = torch.where(big.any(1), big.long().argmax(1) + 1, n_free)
    return torch.minimum(torch.minimum(cap, first_big), n_free).clamp(min=1)


def pixels_to_freeze(change: torch.Tensor, allowed: torch.Tensor, eq_count: torch.Tensor) -> torch.Tensor:
    """[n, P] mask of the allowed pixels (``allowed`` [n, P]) that the L0 attack freezes after a
    successful solve: those of smallest ``change`` [n, P], as many as :func:`freeze_counts`
    says; ties in the order of the pixels. All rows at once (a loop over images was most of the
    attack's time outside the model)."""
    P = change.shape[1]
    srt, order = change.masked_fill(~allowed, math.inf).sort(dim=1, stable=True)
    n = freeze_counts(srt, allowed.sum(1), eq_count)
    take = torch.arange(P, device=change.device) < n[:, None]
    return torch.zeros_like(allowed).scatter_(1, order, take) & allowed


@register("cw_l0")
class CWL0(Attack):
    """Carlini-Wagner L0 (Carlini and Wagner 2017), batched with a per-image mask of allowed
    pixels, c, Adam state and step count. Returns each image's last successful solve (the clean
    image where the first failed); ``extras``: ``allowed`` (pixels the returned solve was
    allowed to change; 0 where none succeeded), ``solves`` (successful L2 solves)."""

    Options = CWL0Options

    def _run(self, x, y, target, runner, index):
        o = self.options
        B, dev = len(x), x.device
        C, H, W = x.shape[1:]
        targeted = target is not None
        cls = target if targeted else y
        allowed = torch.ones(B, 1, H, W, dtype=torch.bool, device=dev)
        state = PerImageSearch(x, o.lr, o.c)
        w, adam, c, it, iters, best, found = (state.w, state.adam, state.c, state.it, state.iters, state.best,
                                              state.found)
        solves = torch.zeros(B, dtype=torch.long, device=dev)
        best_allowed = torch.zeros(B, dtype=torch.long, device=dev)
        runner.expect(B * o.steps)
        odds = _odds(runner, targeted)
        active = torch.arange(B, device=dev)

        def f_loss(z, const, cl):
            return const * _hinge(odds(z, cl), cl, targeted, o.kappa)

        while len(active):
            xa, wa, ma = x[active], w[active], allowed[active]
            adv = torch.where(ma, from_tanh_space(wa), xa)
            ca = c[active].to(x.dtype)
            g, z = runner.loss_grad(adv, active, f_loss, ca, cls[active], return_logits=True)
            d = adv - xa
            gx = (g + 2 * d) * ma
            hit = _hinge(odds(z, cls[active]), cls[active], targeted, o.kappa) == 0
            if hit.any():  # a successful solve: keep it, freeze pixels, solve again from it
                s = active[hit]
                best[s] = adv[hit].detach()
                best_allowed[s] = allowed[s].flatten(1).sum(1)
                found[s] = True
                solves[s] += 1
                dh = d[hit]
                change = (dh.abs() * gx[hit].abs()).sum(1).flatten(1)  # [n, P]
                free = allowed[s, 0].flatten(1)
                eq = (dh.abs() > 1e-4).any(1).flatten(1).sum(1)  # pixels changed
                allowed[s, 0] = (free & ~pixels_to_freeze(change, free, eq)).view(-1, H, W)
                w[s] = to_tanh_space(best[s])
                adam.reset(s)
                it[s] = 0
            go = ~hit
            stepped = active[go]
            gw = gx * (1 - (2 * adv - 1).pow(2)) / 2
            w[stepped] = adam.step(stepped, wa[go], gw[go])
            it[stepped] += 1
            iters[active] += 1
            spent = state.double_spent(stepped, o.steps)
            w[spent] = to_tanh_space(torch.where(found[spent].view(-1, 1, 1, 1), best[spent], x[spent]))
            done = (c[active] > o.max_c) | ~allowed[active].flatten(1).any(1)
            active = active[~done]
        return RawResult(adv=best, iterations=iters, search_success=found,
                         extras={"allowed": best_allowed, "solves": solves})
