"""The batched L-BFGS-B (pyadv.optim.LBFGSB) against scipy's L-BFGS-B, side by side in one process,
on the shape of the L-BFGS attack: B = 256 problems of n = 784 variables on [0, 1], 10 corrections,
up to 50 iterations.

  The problems: f_b(x) = 1/2 sum_i d_bi (x_i - c_bi)^2 + 1/2 |U_b'(x - c_b)|^2 + sum_i log(1 +
  (x_i - e_bi)^2), d_bi log-uniform on [1e-4, 1], U_b [n, 8]: ill-conditioned, non-convex, their minimisers partly outside the
  box (so the Cauchy point meets breakpoints and the subspace step meets bounds); factr 10 and
  pgtol 1e-10 for both, so that solves run long (24 iterations on average); f and g of all
  waiting problems are one batched evaluation in float64 torch (a few percent of pyadv's time).

  pyadv:  LBFGSB.step for every waiting problem, one batched objective per round
  scipy:  scipy.optimize.minimize(method="L-BFGS-B") one problem at a time, its objective in
          numpy (what a scipy user runs; scipy's routine holds the GIL, so one core)

Reported: problems solved per second each, the ratio, and whether both took the same number
of iterations on every problem (the iterates are the same up to rounding).

    python benchmarks/lbfgsb.py [--threads 2] [--quick]

CPU only: the solver is a CPU op (its per-problem logic branches at every step); on a GPU run
the caller's f and g come to the host, as they would for scipy.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from pyadv.bench.harness import alternating, machine, median_ratio, parser, script
from pyadv.bench.peers import installed
from pyadv.optim import LBFGSB

FAMILY, SUITE, PEERS = "lbfgsb", "kernels", ("scipy",)
# scipy's "extremely high accuracy" setting, so that solves run long enough to fill their memory
# (24 iterations on average), as the attack's do
FACTR, PGTOL = 10.0, 1e-10


def problems(B: int, n: int, seed: int = 0):
    """The benchmark's problems as float64 arrays: d [B, n], c [B, n], e [B, n], U [B, n, 8], x0."""
    rng = np.random.default_rng(seed)
    d = 10.0 ** rng.uniform(-4, 0, (B, n))
    c = rng.uniform(-0.3, 1.3, (B, n))
    e = rng.uniform(0.0, 1.0, (B, n))
    U = rng.standard_normal((B, n, 8)) / np.sqrt(n) * 3
    x0 = rng.uniform(0.0, 1.0, (B, n))
    return d, c, e, U, x0


def objective_torch(P, rows: torch.Tensor, x: torch.Tensor):
    d, c, e, U = P if len(rows) == len(P[0]) else (a[rows] for a in P)  # rows: sorted and distinct
    r = x - c
    u = torch.bmm(U.transpose(1, 2), r[:, :, None])[:, :, 0]
    q = x - e
    f = 0.5 * (d * r * r).sum(1) + 0.5 * (u * u).sum(1) + torch.log1p(q * q).sum(1)
    g = d * r + torch.bmm(U, u[:, :, None])[:, :, 0] + 2 * q / (1 + q * q)
    return f, g


def objective_numpy(d, c, e, U, x):
    r = x - c
    u = U.T @ r
    q = x - e
    return 0.5 * (d * r * r).sum() + 0.5 * u @ u + np.log1p(q * q).sum(), d * r + U @ u + 2 * q / (1 + q * q)


def solve_pyadv(arrays, x0, max_iter):
    B, n = x0.shape
    P = tuple(torch.from_numpy(a) for a in arrays)
    opt = LBFGSB(B, n, 0.0, 1.0, max_iter=max_iter, factr=FACTR, pgtol=PGTOL)
    opt.start(torch.arange(B), torch.from_numpy(x0))
    while len(rows := opt.waiting()):
        f, g = objective_torch(P, rows, opt.x[rows])
        opt.step(rows, f, g)
    return opt.iterations.numpy().copy()


def solve_scipy(arrays, x0, max_iter):
    from scipy.optimize import minimize

    d, c, e, U = arrays
    n = x0.shape[1]
    its = []
    for b in range(len(x0)):
        res = minimize(lambda v: objective_numpy(d[b], c[b], e[b], U[b], v), x0[b], jac=True, method="L-BFGS-B",
                       bounds=[(0.0, 1.0)] * n,
                       options={"maxiter": max_iter, "ftol": FACTR * np.finfo(float).eps, "gtol": PGTOL})
        its.append(res.nit)
    return np.array(its)


def build_parser():
    return parser(__doc__)


def run(args) -> dict:
    if torch.device(args.device).type != "cpu":
        raise SystemExit("the L-BFGS-B benchmark runs on the CPU (--device cpu)")
    B, n, max_iter = (32, 784, 50) if args.quick else (256, 784, 50)
    rounds = 1 if args.quick else 3
    d, c, e, U, x0 = problems(B, n)
    arrays = (d, c, e, U)
    payload = {"family": FAMILY, "machine": machine(args.threads, args.device), "B": B, "n": n, "m": 10,
               "max_iter": max_iter, "factr": FACTR, "pgtol": PGTOL}
    scipy_ok = installed("scipy")
    payload["peers_missing"] = [] if scipy_ok else ["scipy"]
    its = {}

    def call(who, r):
        its[who] = (solve_pyadv if who == "pyadv" else solve_scipy)(arrays, x0, max_iter)

    t0 = time.perf_counter()
    names = ["pyadv", "scipy"] if scipy_ok else ["pyadv"]
    times = alternating(names, rounds, call)
    payload["wall_s"] = time.perf_counter() - t0
    med = {k: float(np.median(v)) for k, v in times.items()}
    payload["pyadv_s"], payload["pyadv_problems_per_s"] = med["pyadv"], B / med["pyadv"]
    payload["pyadv_iterations_mean"] = float(its["pyadv"].mean())
    if scipy_ok:
        payload["scipy_s"], payload["scipy_problems_per_s"] = med["scipy"], B / med["scipy"]
        payload["speedup_vs_scipy"] = median_ratio(times, "scipy")
        payload["same_iterations"] = float((its["pyadv"] == its["scipy"]).mean())
    return payload


def summary(payload) -> list[dict]:
    vs = {"scipy": payload["speedup_vs_scipy"]} if "speedup_vs_scipy" in payload else {}
    return [{"case": f"L-BFGS-B {payload['B']} problems, n={payload['n']}, m={payload['m']}, "
                     f"{payload['max_iter']} iterations", "rate": payload["pyadv_problems_per_s"],
             "unit": "problems/s", "vs": vs}]


if __name__ == "__main__":
    import sys

    script(sys.modules[__name__])
