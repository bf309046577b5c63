"""Box-constrained L-BFGS (Szegedy et al. 2014, "Intriguing properties of neural networks"; the
Raissi notes, paper 003): minimise c ||r||_2 + loss_f(x + r, l) subject to x + r in [0, 1]^m,
with a search over c per image.

Each image's solves are L-BFGS-B (pyadv.optim.LBFGSB: scipy's algorithm and options, compiled):
they run side by side, every waiting point of every image is answered by one batched forward
and backward pass, and one parallel call advances all the solves, so the model sees whole
batches and little else runs between its passes.

On c: Szegedy et al. write "the minimum c > 0 for which the minimizer r ... satisfies
f(x + r) = l", but with c weighting ||r|| a smaller c gives a larger perturbation (c -> 0
ignores the distance); the closest adversarial, which the paper is after, comes from the
largest c whose minimiser is still adversarial. That is what the search finds (as foolbox's
L-BFGS attack, which puts its c on the loss, searches for the smallest c there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ._base import Attack, CommonOptions, RawResult, int_option, number_option, register
from ..optim.lbfgsb import EVALUATE, LBFGSB
from ._lbfgsb import drive, minimise
from ._losses import cross_entropy


@dataclass(frozen=True)
class LBFGSOptions(CommonOptions):
    """c: the first constant tried (weight of ||r||_2); search_steps: L-BFGS-B solves per image:
    c is multiplied by 10 after an adversarial minimiser and divided by 10 after a failed one
    until the two are bracketed, then bisected geometrically; max_iter: L-BFGS-B iterations
    per solve. Targeted as in the paper (loss_f is the cross-entropy of the target); an
    untargeted call aims at each image's most probable wrong class and counts any
    misclassification as success."""
    c: float = 0.1
    search_steps: int = 10
    max_iter: int = 100

    def __post_init__(self):
        super().__post_init__()
        number_option("c", self.c, positive=True)
        int_option("search_steps", self.search_steps, 1)
        int_option("max_iter", self.max_iter, 1)


def next_constants(c: torch.Tensor, adversarial: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """:func:`next_constant` for many images at once, NaN for a bound not found yet."""
    lo = torch.where(adversarial, c, lo)
    hi = torch.where(adversarial, hi, c)
    mid = torch.sqrt(lo * hi)
    c = torch.where(adversarial, torch.where(hi.isnan(), c * 10, mid), torch.where(lo.isnan(), c / 10, mid))
    return c, lo, hi


def next_constant(c: float, adversarial: bool, lo: float | None, hi: float | None):
    """One step of the search for the largest c with an adversarial minimiser: (c, lo, hi),
    lo the largest adversarial c so far, hi the smallest failed one."""
    if adversarial:
        lo = c
        c = c * 10 if hi is None else math.sqrt(lo * hi)
    else:
        hi = c
        c = c / 10 if lo is None else math.sqrt(lo * hi)
    return c, lo, hi


@register("lbfgs")
class LBFGS(Attack):
    """Box-constrained L-BFGS (Szegedy et al. 2014). Returns per image the adversarial of least
    L2 over its solves (the clean image where none was adversarial); ``extras``: ``const`` (the
    c of the returned image, NaN on failure), ``last_const`` and ``last_l2`` (the last solve's c
    and the L2 of its minimiser, adversarial or not), ``solves``."""

    Options = LBFGSOptions
    # L-BFGS-B's line search needs f and its gradient consistent to more than bf16's 3 digits: in
    # bf16 it spent 2.1x the evaluations on the digits CNN (benchmarks/precision.py), so "auto"
    # keeps float32 (an explicit precision="bf16" is still honoured)
    auto_reduced = False
    # "compiled": pyadv.optim.LBFGSB, every image's solve advanced in one parallel call per round;
    # "scipy": scipy's L-BFGS-B per image (the reference the tests compare with)
    _solver = "compiled"
    _direct = True  # the scipy solver: its L-BFGS-B routine driven directly where it can be

    def _run(self, x, y, target, runner, index):
        o = self.options
        B = len(x)
        runner.expect(B * o.search_steps * o.max_iter)
        if target is None:  # the most probable wrong class
            p = runner.probs(x, torch.arange(B, device=x.device), exact=True)
            aim = p.scatter(1, y[:, None], -1.0).argmax(1)
        else:
            aim = target

        def evaluate(rows: torch.Tensor, points: torch.Tensor):
            """The model at points [R, n] (float64, CPU) for images rows: cross-entropy of the aim
            [R] (float64), its gradient [R, n] (the model's dtype: the objective's float64 sum
            widens it) and whether each point hits [R] (bool), all on the CPU."""
            r = rows.to(x.device)
            imgs = points.to(device=x.device, dtype=x.dtype).view(len(rows), *x.shape[1:])
            g, z = runner.loss_grad(imgs, r, cross_entropy, aim[r], return_logits=True)
            ok = runner.hit(z, y[r], aim[r] if target is not None else None)
            return cross_entropy(z, aim[r]).double().cpu(), g.flatten(1).cpu(), ok.cpu()

        run = self._searches_compiled if self._solver == "compiled" else self._searches_scipy
        x0 = x.detach().double().flatten(1).cpu()
        # L-BFGS-B keeps 2m corrections of n values per image (about 0.2 MB at 28 x 28, 36 MB at
        # 3 x 224 x 224): images go through in groups whose state fits the memory budget
        group = max(1, runner.budget // LBFGSB.state_bytes(x0.shape[1]))
        parts = []
        for g0 in range(0, B, group):
            rows = torch.arange(g0, min(B, g0 + group))
            parts.append(run(x0[rows], lambda r, v, rows=rows: evaluate(rows[r], v)))
        best, found, const, last_c, last_l2, nit = (torch.cat(col) for col in zip(*parts)) if parts else \
            (x0, torch.zeros(0, dtype=torch.bool), *(torch.zeros(0, dtype=torch.float64),) * 3,
             torch.zeros(0, dtype=torch.long))
        adv = torch.where(found.to(x.device)[:, None], best.to(device=x.device, dtype=x.dtype), x.flatten(1))
        dev = x.device
        return RawResult(adv=adv.view_as(x).clone(), iterations=nit.to(dev), search_success=found.to(dev),
                         extras={"const": const.to(dev), "last_const": last_c.to(dev), "last_l2": last_l2.to(dev),
                                 "solves": torch.full((B,), o.search_steps, dtype=torch.long, device=dev),
                                 "aim": aim})

    def _searches_compiled(self, x0: torch.Tensor, evaluate):
        """Every image's search over c, its solves advanced together by one compiled L-BFGS-B
        (scipy's options), each round one batched evaluation of every waiting point. The model's
        answer at the clean image is the same for every c: kept from the first round, it starts
        each later solve without an evaluation."""
        o = self.options
        B, n = x0.shape
        f64 = dict(dtype=torch.float64)
        opt = LBFGSB(B, n, 0.0, 1.0, max_iter=o.max_iter)
        c = torch.full((B,), float(o.c), **f64)
        lo = torch.full((B,), math.nan, **f64)
        hi = torch.full((B,), math.nan, **f64)
        best, best_l2, const = x0.clone(), torch.full((B,), math.inf, **f64), torch.full((B,), math.nan, **f64)
        last_c, last_l2 = torch.zeros(B, **f64), torch.zeros(B, **f64)
        nit, solves = torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long)
        hit = torch.zeros(B, dtype=torch.bool)  # at each image's last evaluated point
        verify = torch.zeros(B, dtype=torch.bool)  # ended away from its last evaluated point
        clean = None  # (cross-entropy, gradient, hit) at x0

        work = torch.empty(B, n, **f64)  # r, then the objective's gradient: one buffer for every round

        def answer(rows, ce, g):
            every = len(rows) == B  # rows are sorted and distinct: then all of them, in order
            r = work[:len(rows)]
            torch.sub(opt.x if every else opt.x[rows], x0 if every else x0[rows], out=r)
            cr = c if every else c[rows]
            norm = (torch.linalg.vecdot(r, r) + 1e-12).sqrt_()
            f = cr * norm + ce
            opt.step(rows, f, r.mul_((cr / norm)[:, None]).add_(g))

        opt.start(torch.arange(B), x0)
        while True:
            rows, check = opt.waiting(), torch.nonzero(verify).flatten()
            if not len(rows) and not len(check):
                break
            if len(check):
                ce, g, ok = evaluate(torch.cat([rows, check]), torch.cat([opt.x[rows], opt.x[check]]))
            else:
                ce, g, ok = evaluate(rows, opt.x if len(rows) == B else opt.x[rows])
            R = len(rows)
            if clean is None:  # the first round: every image at x0
                clean = (ce.clone(), g.clone(), ok.clone())
            hit[rows], hit[check] = ok[:R], ok[R:]
            verify[check] = False
            answer(rows, ce[:R], g[:R])
            ended = torch.cat([rows, check])
            while len(ended := ended[opt.status[ended] != EVALUATE]):
                redo = ended[~opt.at_evaluated[ended] & ~torch.isin(ended, check)]
                verify[redo] = True
                ended = ended[~torch.isin(ended, redo)]
                check = check[:0]
                if not len(ended):
                    break
                # a solve ended: keep its minimiser when adversarial and closer, then the next c
                v = opt.x[ended]
                l2 = (v - x0[ended]).norm(dim=1)
                ok_e = hit[ended]
                better = ok_e & (l2 < best_l2[ended])
                best[ended[better]], best_l2[ended[better]], const[ended[better]] = v[better], l2[better], c[ended[better]]
                last_c[ended], last_l2[ended] = c[ended], l2
                nit[ended] += opt.iterations[ended].long()
                solves[ended] += 1
                c[ended], lo[ended], hi[ended] = next_constants(c[ended], ok_e, lo[ended], hi[ended])
                again = ended[solves[ended] < o.search_steps].sort().values
                if not len(again):
                    break
                opt.start(again, x0[again])
                hit[again] = clean[2][again]
                answer(again, clean[0][again], clean[1][again])
                ended = again
        return best, best_l2 < math.inf, const, last_c, last_l2, nit

    def _searches_scipy(self, x0: torch.Tensor, evaluate):
        """The same searches with scipy's L-BFGS-B per image (:mod:`._lbfgsb`)."""
        o = self.options
        xs = x0.numpy()

        def answer_rows(rows, points):
            ce, g, ok = evaluate(torch.tensor(rows), torch.from_numpy(np.stack(points)))
            return [(float(ce[k]), g[k].numpy(), bool(ok[k])) for k in range(len(rows))]

        def search(i):
            """Image i's solves, one per c: yields the points to evaluate (see ``drive``)."""
            x0 = xs[i]
            c, lo, hi = float(o.c), None, None
            best, best_l2, best_c = None, math.inf, math.nan
            nit = 0
            for _ in range(o.search_steps):
                def fun(v, answer, c=c):
                    ce, g, _ok = answer
                    r = v - x0
                    n = math.sqrt(float(r @ r) + 1e-12)
                    return c * n + ce, c * r / n + g

                v, its, at_v = yield from minimise(fun, x0, o.max_iter, self._direct)
                nit += its
                ok = at_v[2] if at_v is not None else (yield v)[2]
                l2 = float(np.linalg.norm(v - x0))
                if ok and l2 < best_l2:
                    best, best_l2, best_c = v, l2, c
                last_c, last_l2 = c, l2
                c, lo, hi = next_constant(c, ok, lo, hi)
            return best, best_c, last_c, last_l2, nit

        # OpenBLAS's own threads, woken by every small BLAS call inside L-BFGS-B, spun against
        # torch's threads and each other: 3.5-4.9 ms per iteration at n = 784 instead of 0.17 ms
        with threadpool_limits(1, user_api="blas"):
            out = drive([search(i) for i in range(len(xs))], answer_rows)
        found = torch.tensor([b is not None for b, *_ in out])
        best = torch.stack([torch.from_numpy(b) if b is not None else x0[i] for i, (b, *_) in enumerate(out)])
        col = lambda k: torch.tensor([float(v[k]) for v in out], dtype=torch.float64)
        return best, found, col(1), col(2), col(3), torch.tensor([v[4] for v in out], dtype=torch.long)
