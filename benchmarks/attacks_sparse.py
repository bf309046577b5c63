"""FIPSO (Shi et al. 2020, Algorithm 1) against the same attack written two other ways, on the
same correctly classified digits test images, side by side in one process:

- pyadv: ``pyadv.attacks.FIPSO`` (batched swarms, the model runner, finished images leave);
- pyswarms: Algorithm 1 with pyswarms' ``GlobalBestPSO`` per image (same N_p, T, w, c1, c2,
  clip boundary, its ftol/ftol_iter set to our tol/window);
- plain: a batched PyTorch version, one forward of every particle of every image per
  iteration, no runner, no compaction (images stop counting once converged, not costing).

All three perturb the same m pixels per image (largest |d(-log P_y)/dx|), so the comparison
is about the search. For each: images/s, success, queries per success, and the share of the
time spent outside the model's forward passes. Then the runner's measured chunk size against
fixed ones, and the bf16 search (``eval_dtype``) against float32.

    python benchmarks/attacks_sparse.py                 # 100 images, N_p = 200, T = 100
    python benchmarks/attacks_sparse.py --images 20     # a quicker look
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import machine, parser, setup_threads, write_results

from pyadv.attacks import FIPSO
from pyadv.attacks.fipso import f0_loss, success_of
from pyadv.data import digits
from pyadv.models import pretrained


class TimedModel(nn.Module):
    """Counts the wall time and images of every forward pass of the wrapped model."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.seconds = 0.0
        self.images = 0

    def forward(self, x):
        t0 = time.perf_counter()
        out = self.model(x)
        self.seconds += time.perf_counter() - t0
        self.images += len(x)
        return out

    def reset(self):
        self.seconds, self.images = 0.0, 0


def gradient_pixels(model, x, y, m):
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    return g.flatten(1).abs().topk(m, 1).indices


def fitness(model, x_flat, idx, pos, y, a, b, shape):
    """f_A for candidates pos [b, N, m] of images x_flat [b, P]; returns (f_A, success) [b, N]."""
    bsz, N, m = pos.shape
    imgs = x_flat[:, None].repeat(1, N, 1)
    imgs.scatter_add_(2, idx[:, None].expand(-1, N, -1), pos)
    with torch.inference_mode():
        p = model(imgs.clamp_(0, 1).view(bsz * N, *shape)).softmax(1).view(bsz, N, -1)
    return a * f0_loss(p, y[:, None], None, None) + b * pos.norm(dim=2), success_of(p, y[:, None], None, None, 0)


def run_pyswarms(model, x, y, idx, o):
    logging.getLogger("pyswarms").setLevel(logging.ERROR)
    from pyswarms.single import GlobalBestPSO

    shape = x.shape[1:]
    flat = x.flatten(1)
    advs, queries = [], 0
    for i in range(len(x)):
        xs = flat[i, idx[i]]
        lo, hi = (-o["eps"] * xs).numpy(), (o["eps"] * (1 - xs)).numpy()
        calls = [0]

        def f(pos, i=i):
            calls[0] += len(pos)
            p = torch.from_numpy(pos).float()[None]
            fit, _ = fitness(model, flat[i:i + 1], idx[i:i + 1], p, y[i:i + 1], o["a"], o["b"], shape)
            return fit[0].numpy().astype(np.float64)

        np.random.seed(i)
        opt = GlobalBestPSO(n_particles=o["n_particles"], dimensions=len(xs),
                            options={"w": o["w"], "c1": o["c1"], "c2": o["c2"]}, bounds=(lo, hi),
                            bh_strategy="nearest", ftol=o["tol"], ftol_iter=o["window"])
        _, best = opt.optimize(f, iters=o["iters"], verbose=False)
        adv = flat[i].clone()
        adv[idx[i]] += torch.from_numpy(best).float()
        advs.append(adv.clamp(0, 1))
        queries += calls[0]
    return torch.stack(advs).view_as(x), queries


def run_plain(model, x, y, idx, o, seed=0):
    """Algorithm 1 batched in plain PyTorch: every image's swarm in one forward per iteration."""
    gen = torch.Generator().manual_seed(seed)
    B, m = idx.shape
    N = o["n_particles"]
    flat = x.flatten(1)
    xs = flat.gather(1, idx)
    lo, hi = (-o["eps"] * xs)[:, None], (o["eps"] * (1 - xs))[:, None]
    pos = lo + torch.rand(B, N, m, generator=gen) * (hi - lo)
    vel = torch.zeros_like(pos)
    fit, _ = fitness(model, flat, idx, pos, y, o["a"], o["b"], x.shape[1:])
    queries = B * N
    pbest, pbest_fit = pos.clone(), fit.clone()
    g = pbest_fit.argmin(1)
    gbest, gbest_fit = pbest[torch.arange(B), g], pbest_fit[torch.arange(B), g]
    hist = [gbest_fit.clone()]
    active = torch.ones(B, dtype=torch.bool)
    for _ in range(o["iters"]):
        r1, r2 = torch.rand(pos.shape, generator=gen), torch.rand(pos.shape, generator=gen)
        vel = o["w"] * vel + o["c1"] * r1 * (pbest - pos) + o["c2"] * r2 * (gbest[:, None] - pos)
        pos = pos + vel
        out = (pos < lo) | (pos > hi)
        pos = torch.minimum(torch.maximum(pos, lo), hi)
        vel = vel.masked_fill(out, 0.0)
        fit, _ = fitness(model, flat, idx, pos, y, o["a"], o["b"], x.shape[1:])
        queries += int(active.sum()) * N
        better = fit < pbest_fit
        pbest = torch.where(better[..., None], pos, pbest)
        pbest_fit = torch.where(better, fit, pbest_fit)
        g = pbest_fit.argmin(1)
        new_best, new_fit = pbest[torch.arange(B), g], pbest_fit[torch.arange(B), g]
        gbest = torch.where(active[:, None], new_best, gbest)
        gbest_fit = torch.where(active, new_fit, gbest_fit)
        hist.append(gbest_fit.clone())
        if len(hist) > o["window"]:
            active &= ~(hist[-1 - o["window"]] - gbest_fit < o["tol"])
        if not active.any():
            break
    adv = flat.clone()
    adv.scatter_add_(1, idx, gbest)
    return adv.clamp(0, 1).view_as(x), queries


def judged(model, adv, y):
    with torch.inference_mode():
        return model(adv).argmax(1) != y


def main():
    ap = parser("FIPSO against pyswarms and plain batched PyTorch (benchmarks/results/attacks_sparse.json)")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--m", type=int, default=20)
    ap.add_argument("--particles", type=int, default=200)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--skip", nargs="*", default=[], choices=["pyswarms", "plain", "chunks", "bf16"])
    args = ap.parse_args()
    setup_threads(args.threads)
    base = pretrained("digits-cnn", progress=False)
    x, y = digits("test", 28)
    with torch.no_grad():
        ok = base(x).argmax(1) == y
    x, y = x[ok][:args.images].contiguous(), y[ok][:args.images]
    model = TimedModel(base).eval()
    idx = gradient_pixels(base, x, y, args.m)
    o = dict(eps=1.0, a=1.0, b=1e-3, n_particles=args.particles, iters=args.iters, w=0.6, c1=2.0, c2=2.0,
             tol=1e-5, window=10)
    fipso_opts = {k: v for k, v in o.items()}
    results = {}

    def record(name, fn):
        model.reset()
        t0 = time.perf_counter()
        adv, queries = fn()
        total = time.perf_counter() - t0
        s = judged(base, adv, y)
        ns = int(s.sum())
        l2 = (adv - x).flatten(1).norm(dim=1)[s]
        results[name] = {"seconds": total, "images_per_s": len(x) / total, "success_rate": ns / len(x),
                         "median_l2_of_successes": float(l2.median()) if ns else math.nan,
                         "queries": queries, "queries_per_success": queries / ns if ns else math.inf,
                         "model_s": model.seconds, "outside_model_share": 1 - model.seconds / total}
        print(f"{name:>16}: {total:7.1f} s  {len(x) / total:6.2f} img/s  success {ns}/{len(x)}  "
              f"queries/success {results[name]['queries_per_success']:.0f}  L2 {results[name]['median_l2_of_successes']:.3f}"
              f"  outside model "
              f"{100 * results[name]['outside_model_share']:.1f} %", flush=True)

    def fipso(**extra):
        def go():
            r = FIPSO(model, pixels=idx, **fipso_opts, **extra)(x, y)
            go.result = r
            return r.adv, int(r.queries.sum()) - len(x)  # minus the final check, as the peers have none
        return go

    # Warm the runner's measurement (once per process) so it is not charged to one run.
    FIPSO(model, pixels=idx[:2], n_particles=args.particles, iters=1)(x[:2], y[:2])
    FIPSO(model, pixels=idx[:2], n_particles=args.particles, iters=1, eval_dtype="bfloat16")(x[:2], y[:2])
    run = fipso()
    record("pyadv", run)
    results["pyadv"]["runner"] = run.result.profile
    if "plain" not in args.skip:
        record("plain_torch", lambda: run_plain(model, x, y, idx, o))
    if "pyswarms" not in args.skip:
        record("pyswarms", lambda: run_pyswarms(model, x, y, idx, o))
    if "bf16" not in args.skip:
        run16 = fipso(eval_dtype="bfloat16")
        record("pyadv_bf16", run16)
        results["pyadv_bf16"]["precision"] = run16.result.precision
    ratios = {f"pyadv_vs_{k}": results[k]["seconds"] / results["pyadv"]["seconds"]
              for k in ("plain_torch", "pyswarms", "pyadv_bf16") if k in results}
    if "pyadv_bf16" in results:
        ratios["pyadv_vs_pyadv_bf16"] = results["pyadv_bf16"]["seconds"] / results["pyadv"]["seconds"]
        ratios["bf16_speedup"] = results["pyadv"]["seconds"] / results["pyadv_bf16"]["seconds"]
    chunks = {}
    if "chunks" not in args.skip:
        n = min(len(x), 20)
        sub = dict(fipso_opts, iters=min(args.iters, 20), tol=0.0)
        for c in (None, 32, 64, 128, 256, 512, 1024, 4096):
            t0 = time.perf_counter()
            r = FIPSO(base, pixels=idx[:n], chunk_size=c, **sub)(x[:n], y[:n])
            dt = time.perf_counter() - t0
            chunks["auto" if c is None else str(c)] = int(r.queries.sum()) / dt
            print(f"chunk {c or 'auto':>5}: {chunks['auto' if c is None else str(c)]:8.0f} forward img/s", flush=True)
        from pyadv.attacks._runner import _plans
        chunks["auto_chosen"] = [list(v) for v in _plans.get(base, {}).values()]
    print({k: round(v, 2) for k, v in ratios.items()})
    payload = {"machine": machine(args.threads), "settings": {"images": len(x), "m": args.m, **o,
                                                             "pixels": "gradient (shared)"},
               "results": results, "ratios": ratios, "chunk_forward_img_per_s": chunks}
    print("wrote", write_results("attacks_sparse", payload, args.out))


if __name__ == "__main__":
    main()
