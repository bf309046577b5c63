"""FIPSO (Shi et al. 2020, Algorithm 1) against the same attack written two other ways, on the
same correctly classified digits test images, side by side in one process:

- pyadv: ``pyadv.attacks.FIPSO`` (batched swarms, the model runner, finished images leave;
  its candidates evaluated incrementally from one pass of each image, see
  ``pyadv.attacks._incremental``), and ``pyadv_dense`` the same with ``incremental=False``
  (every candidate rendered and forwarded whole, as before);
- pyswarms: Algorithm 1 with pyswarms' ``GlobalBestPSO`` per image (same N_p, T, w, c1, c2,
  clip boundary, its ftol/ftol_iter set to our tol/window);
- plain: a batched PyTorch version, one forward of every particle of every image per
  iteration, no runner, no compaction (images stop counting once converged, not costing).

All three perturb the same m pixels per image (largest |d(-log P_y)/dx|), so the comparison
is about the search. For each: images/s, success, queries per success, and the share of the
time spent outside the model's forward passes. Then the runner's measured chunk size against
fixed ones (and the incremental pass), and the dense bf16 search (``precision="bf16"``,
``incremental=False``) against float32. pyadv gets the model itself: its profile times its own passes, and the peers' timing
wrapper would hide the model's layers from torch.fx (no folded batch norm, no incremental pass).

    python benchmarks/attacks_sparse.py                 # 100 images, N_p = 200, T = 100
    python benchmarks/attacks_sparse.py --images 20     # a quicker look

On CUDA, the model and every implementation's tensors are on the device; pyswarms keeps its
swarm in NumPy on the host, as it would for its users.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from pyadv.attacks import FIPSO
from pyadv.attacks.fipso import f0_loss, success_of
from pyadv.bench.harness import TimedModel, alternating, interleaved, machine, median_ratio, parser, script
from pyadv.bench.peers import installed
from pyadv.data import digits
from pyadv.models import pretrained

FAMILY, SUITE, PEERS = "attacks_sparse", "attacks", ("pyswarms",)


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
        lo, hi = (-o["eps"] * xs).cpu().numpy(), (o["eps"] * (1 - xs)).cpu().numpy()
        calls = [0]

        def f(pos, i=i):
            calls[0] += len(pos)
            p = torch.from_numpy(pos).float()[None].to(flat.device)
            fit, _ = fitness(model, flat[i:i + 1], idx[i:i + 1], p, y[i:i + 1], o["a"], o["b"], shape)
            return fit[0].cpu().numpy().astype(np.float64)

        np.random.seed(i)
        opt = GlobalBestPSO(n_particles=o["n_particles"], dimensions=len(xs),
                            options={"w": o["w"], "c1": o["c1"], "c2": o["c2"]}, bounds=(lo, hi),
                            bh_strategy="nearest", ftol=o["tol"], ftol_iter=o["window"])
        _, best = opt.optimize(f, iters=o["iters"], verbose=False)
        adv = flat[i].clone()
        adv[idx[i]] += torch.from_numpy(best).float().to(adv.device)
        advs.append(adv.clamp(0, 1))
        queries += calls[0]
    return torch.stack(advs).view_as(x), queries


def run_plain(model, x, y, idx, o, seed=0):
    """Algorithm 1 batched in plain PyTorch: every image's swarm in one forward per iteration."""
    gen = torch.Generator(x.device).manual_seed(seed)
    B, m = idx.shape
    N = o["n_particles"]
    rows = torch.arange(B, device=x.device)
    flat = x.flatten(1)
    xs = flat.gather(1, idx)
    lo, hi = (-o["eps"] * xs)[:, None], (o["eps"] * (1 - xs))[:, None]
    pos = lo + torch.rand(B, N, m, generator=gen, device=x.device) * (hi - lo)
    vel = torch.zeros_like(pos)
    fit, _ = fitness(model, flat, idx, pos, y, o["a"], o["b"], x.shape[1:])
    queries = B * N
    pbest, pbest_fit = pos.clone(), fit.clone()
    g = pbest_fit.argmin(1)
    gbest, gbest_fit = pbest[rows, g], pbest_fit[rows, g]
    hist = [gbest_fit.clone()]
    active = torch.ones(B, dtype=torch.bool, device=x.device)
    for _ in range(o["iters"]):
        r1 = torch.rand(pos.shape, generator=gen, device=x.device)
        r2 = torch.rand(pos.shape, generator=gen, device=x.device)
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
        new_best, new_fit = pbest[rows, g], pbest_fit[rows, g]
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


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--group", type=int, default=25, help="images per round; implementations alternate per round")
    ap.add_argument("--m", type=int, default=20)
    ap.add_argument("--particles", type=int, default=200)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--skip", nargs="*", default=[], choices=["pyswarms", "plain", "chunks", "bf16", "dense"])
    return ap


def run(args) -> dict:
    if args.quick:
        args.images, args.group, args.particles, args.iters = 4, 2, 50, 20
        args.skip = sorted({*args.skip, "chunks"})
    if not installed("pyswarms"):
        args.skip = sorted({*args.skip, "pyswarms"})
    dev = torch.device(args.device)
    base = pretrained("digits-cnn", progress=False).to(dev)
    x, y = digits("test", 28)
    x, y = x.to(dev), y.to(dev)
    with torch.no_grad():
        ok = base(x).argmax(1) == y
    x, y = x[ok][:args.images].contiguous(), y[ok][:args.images]
    model = TimedModel(base).eval()
    idx = gradient_pixels(base, x, y, args.m)
    o = dict(eps=1.0, a=1.0, b=1e-3, n_particles=args.particles, iters=args.iters, w=0.6, c1=2.0, c2=2.0,
             tol=1e-5, window=10)
    last = {}

    def fipso(key, **extra):
        def go(rows):
            r = FIPSO(base, pixels=idx[rows], **o, **extra)(x[rows], y[rows], index=rows)
            last[key] = r
            return r.adv, int(r.queries.sum()) - len(rows)  # minus the final check: the peers have none
        return go

    impls = {"pyadv": fipso("pyadv")}
    if "dense" not in args.skip:
        impls["pyadv_dense"] = fipso("pyadv_dense", incremental=False)
    if "bf16" not in args.skip:
        # dense: by default a bf16 search takes the float32 incremental pass where it is faster
        impls["pyadv_bf16"] = fipso("pyadv_bf16", precision="bf16", incremental=False)
    if "pyswarms" not in args.skip:
        impls["pyswarms"] = lambda rows: run_pyswarms(model, x[rows], y[rows], idx[rows], o)
    if "plain" not in args.skip:
        impls["plain_torch"] = lambda rows: run_plain(model, x[rows], y[rows], idx[rows], o)

    # The runner measures its chunk once per process: do it before anything is timed.
    for prec in ("fp32", "bf16"):
        FIPSO(base, pixels=idx[:2], n_particles=args.particles, iters=1, precision=prec)(x[:2], y[:2])

    # This VM's speed drifts by up to 2x over minutes: the images go in rounds of --group, and
    # within each round every implementation runs on the same images, in alternating order.
    acc = {k: {"model_s": 0.0, "queries": 0, "adv": torch.empty_like(x)} for k in impls}
    prec = {k: {"search_successes": 0, "failed_check": 0, "found_by_check": 0, "fallback": 0}
            for k in ("pyadv", "pyadv_dense", "pyadv_bf16")}
    groups = torch.arange(len(x), device=dev).split(args.group)

    def call(name, gi):
        rows = groups[gi]
        model.reset()
        adv, q = impls[name](rows)
        a = acc[name]
        # pyadv's search runs a copy of the model (the runner's search copy), which the
        # wrapper does not see: its own profile counts the time in the model's passes.
        r = last[name] if name in prec else None
        a["model_s"] += r.profile["model_s"] if r is not None else model.seconds
        a["queries"] += q
        a["adv"][rows] = adv
        if r is not None:
            for k in prec[name]:
                prec[name][k] += r.precision.get(k, 0)

    per_round = alternating(list(impls), len(groups), call, dev)
    results = {}
    for name, a in acc.items():
        seconds = sum(per_round[name])
        s = judged(base, a["adv"], y)
        ns = int(s.sum())
        l2 = (a["adv"] - x).flatten(1).norm(dim=1)[s]
        results[name] = {"seconds": seconds, "images_per_s": len(x) / seconds, "success_rate": ns / len(x),
                         "median_l2_of_successes": float(l2.median()) if ns else math.nan,
                         "queries": a["queries"], "queries_per_success": a["queries"] / ns if ns else math.inf,
                         "forward_images_per_s": a["queries"] / a["model_s"] if a["model_s"] else math.nan,
                         "model_s": a["model_s"], "outside_model_share": 1 - a["model_s"] / seconds}
        r = results[name]
        print(f"{name:>12}: {r['seconds']:7.1f} s  {r['images_per_s']:5.2f} img/s  success {ns}/{len(x)}  "
              f"queries/success {r['queries_per_success']:.0f}  L2 {r['median_l2_of_successes']:.3f}  "
              f"forwards {r['forward_images_per_s']:.0f} img/s  outside model {100 * r['outside_model_share']:.1f} %",
              flush=True)
    for name in prec:
        if name in results:
            # successes of the search (channels-last weights, bf16 autocast for pyadv_bf16) that did
            # not hold when the model ran as given, and the reverse
            results[name]["search_vs_check"] = prec[name]
    ratios = {}
    for k in impls:
        if k != "pyadv":
            ratios[f"{k}_time_over_pyadv"] = {"total": results[k]["seconds"] / results["pyadv"]["seconds"],
                                              "median_over_rounds": median_ratio(per_round, k)}
    print({k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in ratios.items()})

    chunks = {}
    if "chunks" not in args.skip:
        chunks = chunk_sweep(base, x, idx, args.particles)
    return {"machine": machine(args.threads, dev), "settings": {"images": len(x), "group": args.group, "m": args.m,
                                                               **o, "pixels": "largest |gradient| (shared)"},
            "results": results, "ratios": ratios, "runner_chunks": chunks}


def summary(payload) -> list[dict]:
    res = payload["results"]
    ours = res["pyadv"]
    vs = {k.replace("_time_over_pyadv", ""): v["median_over_rounds"] for k, v in payload["ratios"].items()
          if not k.startswith("pyadv")}
    return [{"case": f"fipso m={payload['settings']['m']} N={payload['settings']['n_particles']} "
                     f"T={payload['settings']['iters']}", "rate": ours["images_per_s"], "unit": "images/s",
             "vs": vs, "success": ours["success_rate"], "outside_model": ours["outside_model_share"]}]


def chunk_sweep(model, x, idx, particles):
    """Forward images/s of the runner's sparse evaluation at its measured chunk against fixed
    sizes, side by side in alternating rounds (each fixed size still measures its memory format)."""
    from pyadv.attacks._runner import ModelRunner, _plans

    n = min(len(x), 10)
    gen = torch.Generator().manual_seed(0)
    vals = ((torch.rand(n, particles, idx.shape[1], generator=gen) - 0.5) * 0.5).to(x.device)
    owners = torch.arange(n, device=x.device)
    fns = {}
    for c in (None, 32, 64, 128, 256, 512, 1024):
        run = ModelRunner(model, x[:1], n, chunk_size=c, incremental=False)
        run.plan(n * particles)  # measure outside the timing
        fns["auto" if c is None else str(c)] = (lambda run=run: run.probs_sparse(x[:n], idx[:n], vals, owners))
    inc = ModelRunner(model, x[:1], n, incremental=True)
    inc.probs_sparse(x[:n], idx[:n], vals, owners)  # the plan (one pass of each image) outside the timing
    fns["incremental"] = lambda: inc.probs_sparse(x[:n], idx[:n], vals, owners)
    t = interleaved(fns, rounds=5, warmup=1, device=x.device)
    out = {k: {"forward_images_per_s": n * particles / v["median_s"]} for k, v in t.items()}
    chosen = _plans.get(model, {})
    out["auto_plan"] = [list(v) for v in chosen.values()]
    for k, v in out.items():
        if k != "auto_plan":
            print(f"chunk {k:>5}: {v['forward_images_per_s']:7.0f} forward img/s", flush=True)
    print("measured plans (chunk, channels-last):", out["auto_plan"])
    return out


if __name__ == "__main__":
    import sys

    script(sys.modules[__name__])
