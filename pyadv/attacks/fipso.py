"""FIPSO: the customised adversarial attack of Shi, Shu, Zhu and Chen (2020), Algorithm 1.

The m most vulnerable pixels (channel components: an RGB pixel is three) are chosen by
First-order Influence, then one particle swarm per image searches the perturbation
omega of those pixels, omega_i in eps * (0 - x_(i), 1 - x_(i)), minimising

    f_A(omega) = a * f0(omega) + b * ||omega||_2        (a >> b)

with the misclassification loss f0 chosen by what the user asks for (y_k: the class with the
k-th largest probability of the perturbed image):

    m only:             |P(y1) - P(y2)| if y1 = y_true, else 0
    P_err:              |P(y2) - P_err| if y1 = y_true, else |P(y1) - P_err|
    target:             |P(y1) - P(y_t)| if y1 != y_t, else 0
    target and P_err:   |P(y1) - P(y_t)| if y1 != y_t, else |P(y1) - P_err|

The swarm runs "until convergence or t = T", as the paper says: f_A keeps shrinking ||omega||
after f0 has reached 0, so a first success does not end it unless ``stop="first_success"``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch

from .. import ops
from ..optim import PSO
from ._base import (Attack, CommonOptions, RawResult, int_option, keyed_generator, number_option, option_error,
                    register)
from ._losses import cross_entropy
from ._runner import ModelRunner

PIXEL_RULES = ("fi", "fi_sa_dnn", "gradient", "fi_gradient")
STOPS = ("converge", "first_success")
INITS = ("uniform", "gradient")


def _as_indices(value) -> tuple:
    """Explicit pixel indices as a tuple ([m] shared by every image) or a tuple of tuples ([B, m])."""
    t = torch.as_tensor(value)
    if t.is_floating_point() or t.dtype == torch.bool or t.dim() not in (1, 2) or t.shape[-1] == 0:
        raise option_error("pixels", value, f"one of {PIXEL_RULES}, or integer indices [m] or [B, m] (m >= 1)")
    if int(t.min()) < 0:
        raise option_error("pixels", value, "indices >= 0 (flat indices into C*H*W)")
    rows = t.view(-1, t.shape[-1])
    for r, row in enumerate(rows):
        if len(torch.unique(row)) != len(row):
            raise option_error("pixels", value, f"distinct indices per image (row {r} repeats one)")
    return tuple(t.tolist()) if t.dim() == 1 else tuple(tuple(r) for r in t.tolist())


@dataclass(frozen=True)
class FIPSOOptions(CommonOptions):
    """Options of :class:`FIPSO` (Shi et al. 2020, Algorithm 1).

    m: pixels perturbed per image (channel components; None: all, the paper's default).
    pixels: how they are chosen: "fi" (largest FI of the eq. (5) objective, FI as printed),
        "fi_sa_dnn" (FI with the authors' guards), "gradient" (largest |df/dx_i|),
        "fi_gradient" (FI times |df/dx_i|), or explicit flat indices [m] or [B, m].
    fi_pixel: instead of m, perturb the pixels with FI >= fi_pixel (Algorithm 2's rule).
        Exact FI is at most (1 - P_y)/P_y, so an image with P_y > 0.5 has no pixel with
        FI >= 1 and the paper's fi_pixel = 1 selects nothing for it: such an image is not
        attacked and is reported with ``extras["m"] == 0`` (a failure), not as an error.
    p_err: the misclassification probability asked for, in [0.5, 1); a success needs the
        achieved probability within ``p_err_tol`` (default 0.05) of it.
    eps: omega_i in eps * (0 - x_i, 1 - x_i), eps in (0, 1].
    a, b: f_A = a f0 + b ||omega||_2 (a >> b; defaults 1 and 1e-3).
    n_particles, iters: N_p and T (defaults 200 and 100); w, c1, c2: PSO (0.6, 2, 2).
    stop: "converge" (the paper's "until convergence or t = T": converged when gbest's f_A
        improved by less than tol * (1 + |f_A|) in each of the last ``window`` iterations,
        pyswarms' ftol / ftol_iter rule; defaults 1e-5 and 10) or "first_success" (stop an
        image as soon as its gbest is a success).
    init: "uniform" (the paper: uniform in the box, zero velocity) or "gradient" (a tenth
        of the particles start on the segment from 0 to the box corner along the sign of the
        loss gradient on the chosen pixels, the corner itself first).
    """
    m: Optional[int] = None
    pixels: Union[str, tuple] = "fi"
    fi_pixel: Optional[float] = None
    p_err: Optional[float] = None
    p_err_tol: float = 0.05
    eps: float = 1.0
    a: float = 1.0
    b: float = 1e-3
    n_particles: int = 200
    iters: int = 100
    w: float = 0.6
    c1: float = 2.0
    c2: float = 2.0
    stop: str = "converge"
    tol: float = 1e-5
    window: int = 10
    init: str = "uniform"

    def __post_init__(self):
        super().__post_init__()
        if self.m is not None:
            int_option("m", self.m, 1)
        if isinstance(self.pixels, str):
            if self.pixels not in PIXEL_RULES:
                raise option_error("pixels", self.pixels, f"one of {PIXEL_RULES} or explicit indices")
        else:
            object.__setattr__(self, "pixels", _as_indices(self.pixels))
            width = len(self.pixels[0]) if isinstance(self.pixels[0], tuple) else len(self.pixels)
            if self.m is not None and self.m != width:
                raise option_error("m", self.m, f"the number of explicit pixel indices ({width}) or None")
        if self.fi_pixel is not None:
            if not isinstance(self.fi_pixel, (int, float)) or not self.fi_pixel >= 0:
                raise option_error("fi_pixel", self.fi_pixel, "None or a number >= 0")
            if self.m is not None:
                raise option_error("fi_pixel", self.fi_pixel, "None when m is given (fi_pixel decides m)")
            if not (isinstance(self.pixels, str) and self.pixels.startswith("fi")):
                raise option_error("fi_pixel", self.fi_pixel, "None unless pixels is 'fi', 'fi_sa_dnn' or "
                                   "'fi_gradient' (the threshold is on FI)")
        if self.p_err is not None and not (isinstance(self.p_err, (int, float)) and 0.5 <= self.p_err < 1):
            raise option_error("p_err", self.p_err, "None or a probability in [0.5, 1)")
        if not (isinstance(self.p_err_tol, (int, float)) and 0 < self.p_err_tol < 0.5):
            raise option_error("p_err_tol", self.p_err_tol, "a number in (0, 0.5)")
        if not (isinstance(self.eps, (int, float)) and 0 < self.eps <= 1):
            raise option_error("eps", self.eps, "a number in (0, 1]")
        number_option("a", self.a, positive=True)
        for name in ("b", "w", "c1", "c2", "tol"):
            number_option(name, getattr(self, name))
        int_option("n_particles", self.n_particles, 2)
        int_option("iters", self.iters, 1)
        int_option("window", self.window, 1)
        if self.stop not in STOPS:
            raise option_error("stop", self.stop, f"one of {STOPS}")
        if self.init not in INITS:
            raise option_error("init", self.init, f"one of {INITS}")


def f0_loss(probs: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor], p_err: Optional[float]
            ) -> torch.Tensor:
    """The misclassification loss f0 of Shi et al. (2020, §2.3) for probs [..., K]; y and
    target broadcast against probs' leading dimensions."""
    top = probs.topk(2, dim=-1)
    p1, p2 = top.values[..., 0], top.values[..., 1]
    y1 = top.indices[..., 0]
    if target is None:
        if p_err is None:
            return torch.where(y1 == y, (p1 - p2).abs(), torch.zeros_like(p1))
        return torch.where(y1 == y, (p2 - p_err).abs(), (p1 - p_err).abs())
    pt = probs.gather(-1, target.expand(probs.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    hit = y1 == target
    if p_err is None:
        return torch.where(hit, torch.zeros_like(p1), (p1 - pt).abs())
    return torch.where(hit, (p1 - p_err).abs(), (p1 - pt).abs())


def success_of(probs: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor], p_err: Optional[float],
               tol: float) -> torch.Tensor:
    """What the options ask for: misclassified / classified as the target, and with p_err the
    achieved probability of the predicted class within tol of it."""
    p1, y1 = probs.max(-1)
    ok = y1 != y if target is None else y1 == target
    if p_err is not None:
        ok = ok & ((p1 - p_err).abs() <= tol)
    return ok


def _objective_grad(runner: ModelRunner, x, y, target, rows) -> torch.Tensor:
    """d f / d x of eq. (5)'s objective: -log P(y), or -log P(target) with a target."""
    t = y if target is None else target
    return runner.loss_grad(x, rows, cross_entropy, t)


@register("fipso")
class FIPSO(Attack):
    """Shi et al. (2020), Algorithm 1: FI-chosen pixels, one PSO swarm per image, with a
    prescribed number of pixels ``m``, misclassification probability ``p_err`` and target
    class (the call's ``target``). Options: :class:`FIPSOOptions`.

    ``result.extras``: ``m`` [B] (pixels perturbed; 0: none selected), ``pixels`` [B, D]
    (their flat indices, -1 past m), ``fitness`` [B] (gbest's f_A), ``f0`` [B] and
    ``converged`` [B] (stopped by the convergence rule rather than T).
    """

    Options = FIPSOOptions

    def _check_call(self, x, y, target):
        o = self.options
        P = x[0].numel() if len(x) else 0
        if o.m is not None and o.m > P:
            raise option_error("m", o.m, f"at most the number of pixel components C*H*W = {P}")
        if not isinstance(o.pixels, str):
            idx = torch.as_tensor(o.pixels)
            if idx.dim() == 2 and idx.shape[0] != len(x):
                raise option_error("pixels", "[B, m] indices", f"one row per image: {len(x)} rows, got {idx.shape[0]}")
            if int(idx.max()) >= P:
                raise option_error("pixels", int(idx.max()), f"indices in [0, C*H*W) = [0, {P})")

    def _success(self, probs, y, target):
        return success_of(probs, y, target, self.options.p_err, self.options.p_err_tol)

    # --- pixel choice ---------------------------------------------------------------------

    def _scores(self, x, y, target, runner: ModelRunner) -> Optional[torch.Tensor]:
        """Per-component scores [B, P] (larger: perturbed first); None for explicit indices."""
        from ..fi import pixel_fi

        o = self.options
        rows = torch.arange(len(x), device=x.device)
        if not isinstance(o.pixels, str):
            return None
        score = None
        if o.pixels in ("fi", "fi_sa_dnn", "fi_gradient"):
            conv = "sa_dnn" if o.pixels == "fi_sa_dnn" else "exact"
            score = pixel_fi(self.model, x, y, target, convention=conv,
                             memory_budget=o.memory_budget).flatten(1).float()
            # K - 1 backward passes per image (and their forwards).
            runner.queries += runner.num_classes - 1
            runner.gradients += runner.num_classes - 1
        if o.pixels in ("gradient", "fi_gradient"):
            g = _objective_grad(runner, x, y, target, rows).flatten(1).abs().float()
            score = g if score is None else score * g
        return score

    def _choose(self, x, y, target, runner):
        """(idx [B, D] flat indices, m [B], fi [B, P] or None)."""
        o = self.options
        B, P = len(x), x[0].numel()
        scores = self._scores(x, y, target, runner)
        if scores is None:
            idx = torch.as_tensor(o.pixels, device=x.device).long()
            idx = idx.expand(B, -1) if idx.dim() == 1 else idx
            return idx.contiguous(), torch.full((B,), idx.shape[1], dtype=torch.long, device=x.device), None
        # Stable order: equal scores keep index order, so ties are decided the same everywhere.
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        if o.fi_pixel is not None:
            m = (scores >= o.fi_pixel).sum(1)
        else:
            m = torch.full((B,), o.m or P, dtype=torch.long, device=x.device)
        D = max(int(m.max()), 1)
        return order[:, :D].contiguous(), m, scores

    # --- the search -----------------------------------------------------------------------

    def _init_positions(self, lo, hi, keys) -> torch.Tensor:
        """Uniform in each image's box, drawn from a generator keyed by (seed, image index), so
        an image's start does not depend on the batch it is in."""
        N = self.options.n_particles
        out = torch.empty(len(lo), N, lo.shape[1], dtype=torch.float64)
        for r, k in enumerate(keys.tolist()):
            out[r] = torch.rand(N, lo.shape[1], generator=keyed_generator(self.options.seed, k), dtype=torch.float64)
        lo64, hi64 = lo.cpu().double(), hi.cpu().double()
        return (lo64[:, None] + out * (hi64 - lo64)[:, None]).to(lo.dtype).to(lo.device)

    def _run(self, x, y, target, runner: ModelRunner, index) -> RawResult:
        o = self.options
        B = len(x)
        device = x.device
        runner.expect(B * o.n_particles * (o.iters + 1))
        idx, m, _ = self._choose(x, y, target, runner)
        D = idx.shape[1]
        flat = x.flatten(1)
        xs = flat.gather(1, idx)
        lo, hi = -o.eps * xs, o.eps * (1 - xs)
        pinned = torch.arange(D, device=device)[None, :] >= m[:, None]
        lo, hi = lo.masked_fill(pinned, 0.0), hi.masked_fill(pinned, 0.0)

        rows = (m > 0).nonzero().flatten()  # images with at least one pixel to perturb
        best_pos = torch.zeros(B, D, dtype=x.dtype, device=device)
        wide = torch.float64 if x.dtype == torch.float64 else torch.float32
        fitness = torch.full((B,), math.inf, dtype=wide, device=device)
        f0 = torch.full((B,), math.nan, dtype=wide, device=device)
        iterations = torch.zeros(B, dtype=torch.long, device=device)
        search_success = torch.zeros(B, dtype=torch.bool, device=device)
        converged = torch.zeros(B, dtype=torch.bool, device=device)
        if len(rows):
            self._search(x, y, target, runner, index, rows, idx, lo, hi, best_pos, fitness, f0, iterations,
                         search_success, converged)
        adv = ops.sparse_perturb(flat, idx, best_pos[:, None, :].contiguous()).view_as(x)
        pix = idx.masked_fill(pinned, -1)
        return RawResult(adv=adv, iterations=iterations, search_success=search_success,
                         extras={"m": m, "pixels": pix, "fitness": fitness, "f0": f0, "converged": converged})

    def _search(self, x, y, target, runner, index, rows, idx, lo, hi, best_pos, fitness, f0, iterations,
                search_success, converged):
        o = self.options
        n = len(rows)
        base = x[rows].contiguous()
        s_idx = idx[rows].contiguous()
        s_y = y[rows]
        s_t = None if target is None else target[rows]
        s_lo, s_hi = lo[rows].contiguous(), hi[rows].contiguous()
        init = self._init_positions(s_lo, s_hi, index[rows])
        if o.init == "gradient":
            g = _objective_grad(runner, base, s_y, s_t, rows).flatten(1).gather(1, s_idx)
            # Untargeted: raise -log P(y), so move along +grad; targeted: lower -log P(t).
            up = g > 0 if s_t is None else g < 0
            corner = torch.where(up, s_hi, s_lo)
            k = max(1, o.n_particles // 10)
            scale = torch.arange(k, 0, -1, dtype=init.dtype, device=init.device) / k
            init[:, :k] = scale[None, :, None] * corner[:, None, :].to(init)

        best = torch.full((n,), math.inf, dtype=fitness.dtype, device=x.device)
        best_ok = torch.zeros(n, dtype=torch.bool, device=x.device)
        best_f0 = torch.full((n,), math.nan, dtype=fitness.dtype, device=x.device)
        streak = torch.zeros(n, dtype=torch.long, device=x.device)  # iterations in a row with a small gain

        def objective(pos, ids):
            z = runner.probs_sparse(base[ids], s_idx[ids], pos, rows[ids], logits=True)   # [b, N, K]
            yy, tt = s_y[ids][:, None], None if s_t is None else s_t[ids][:, None]
            # f0's boundary, where the swarm settles, beyond the band (float32: the logits as they are)
            p = torch.softmax(runner.handicap(z, yy, tt), -1)
            loss0 = f0_loss(p, yy, tt, o.p_err)
            fit = o.a * loss0 + o.b * pos.to(loss0.dtype).norm(dim=2)
            ok = success_of(p, yy, tt, o.p_err, o.p_err_tol)
            fmin, arg = fit.min(1)
            prev = best[ids]
            better = fmin < prev
            new = torch.where(better, fmin, prev)
            small = (prev - new) < o.tol * (1 + new.abs())  # inf - x is inf: the first call is never small
            streak[ids] = torch.where(small, streak[ids] + 1, 0)
            best[ids] = new
            best_ok[ids] = torch.where(better, ok.gather(1, arg[:, None])[:, 0], best_ok[ids])
            best_f0[ids] = torch.where(better, loss0.gather(1, arg[:, None])[:, 0], best_f0[ids])
            done = best_ok[ids].clone() if o.stop == "first_success" else torch.zeros_like(better)
            conv = streak[ids] >= o.window
            converged[rows[ids]] |= conv & ~done
            return fit, done | conv

        pso = PSO(objective, s_lo, s_hi, n_particles=o.n_particles, w=o.w, c1=o.c1, c2=o.c2, seed=o.seed,
                  init_pos=init, keys=index[rows], dtype=x.dtype)
        bar = _progress(o.progress, len(x), "FIPSO")
        last_done = 0
        for _ in range(o.iters):
            if len(pso.active) == 0:
                break
            pso.step()
            if bar is not None:
                done_now = n - len(pso.active)
                bar.update(done_now - last_done)
                last_done = done_now
                bar.set_postfix(success=int(best_ok.sum()))
        if bar is not None:
            bar.update(len(x) - last_done)
            bar.close()
        res = pso.tracker.result()
        best_pos[rows] = res.best_pos
        fitness[rows] = res.best_fit.to(fitness.dtype)
        f0[rows] = best_f0
        iterations[rows] = res.iterations
        search_success[rows] = best_ok


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img")
