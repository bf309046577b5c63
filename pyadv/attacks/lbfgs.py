"""Box-constrained L-BFGS (Szegedy et al. 2014, "Intriguing properties of neural networks"; the
Raissi notes, paper 003): minimise c ||r||_2 + loss_f(x + r, l) subject to x + r in [0, 1]^m,
with a search over c per image.

Each image's solves are scipy's L-BFGS-B, one problem at a time as the algorithm is written;
they run side by side and every objective evaluation of every image is answered by one batched
forward and backward pass (:func:`._lbfgsb.drive`), so the model sees whole batches.

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
    _direct = True  # scipy's L-BFGS-B routine driven directly where it can be (tests compare with False)

    def _run(self, x, y, target, runner, index):
        o = self.options
        B, shape = len(x), x.shape[1:]
        dev = x.device
        runner.expect(B * o.search_steps * o.max_iter)
        if target is None:  # the most probable wrong class
            p = runner.probs(x, torch.arange(B, device=dev), exact=True)
            aim = p.scatter(1, y[:, None], -1.0).argmax(1)
        else:
            aim = target
        xs = x.detach().double().flatten(1).cpu().numpy()

        def evaluate(rows, vs):
            r = torch.tensor(rows, device=dev)
            imgs = torch.from_numpy(np.stack(vs)).to(device=dev, dtype=x.dtype).view(len(rows), *shape)
            g, z = runner.loss_grad(imgs, r, cross_entropy, aim[r], return_logits=True)
            ce = cross_entropy(z, aim[r]).double().cpu().numpy()
            ok = runner.hit(z, y[r], aim[r] if target is not None else None)
            g = g.double().flatten(1).cpu().numpy()
            return [(ce[k], g[k], bool(ok[k])) for k in range(len(rows))]

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
            out = drive([search(i) for i in range(B)], evaluate)
        adv = x.clone()
        found = torch.zeros(B, dtype=torch.bool, device=dev)
        for i, (best, *_rest) in enumerate(out):
            if best is not None:
                adv[i] = torch.from_numpy(best).to(device=dev, dtype=x.dtype).view(shape)
                found[i] = True
        col = lambda k: torch.tensor([float(v[k]) for v in out], device=dev)
        return RawResult(adv=adv, iterations=torch.tensor([v[4] for v in out], dtype=torch.long, device=dev),
                         search_success=found,
                         extras={"const": col(1), "last_const": col(2), "last_l2": col(3),
                                 "solves": torch.full((B,), o.search_steps, dtype=torch.long, device=dev),
                                 "aim": aim})
