"""Swarm kernels and optimisers against the same work composed from torch ops and against
the peers (pyswarms, scipy), side by side in one process.

  pso_step      B=256 swarms, N=200, D=20: particle-dimensions per second
  pso_run       256 Rastrigin-20 problems, N=200, T=100: pyadv.optim.PSO, the same PSO composed
                from torch ops (batched), pyswarms GlobalBestPSO one problem at a time
  de_generation B=256, N=400, D=5 (a one-pixel attack's shape): pyadv (de_trial + de_select),
                composed torch ops, scipy differential_evolution (time per generation per problem)
  sparse_perturb B=64 images of P=3072, N=200 candidates of m=10 pixels: pyadv against torch's
                expand + clone + scatter_add + clamp

    python benchmarks/swarm.py [--threads 2] [--device cpu] [--quick]

On CUDA, pyadv and the composed torch versions run on the device; pyswarms and scipy are
NumPy libraries and run on the CPU as they would for their users.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from pyadv import ops
from pyadv.bench.harness import interleaved, machine, parser, script, sync
from pyadv.bench.peers import installed
from pyadv.optim import PSO

FAMILY, SUITE, PEERS = "swarm", "kernels", ("pyswarms", "scipy")


def rastrigin(x, ids=None):
    return 10 * x.shape[-1] + (x**2 - 10 * torch.cos(2 * math.pi * x)).sum(-1)


def composed_pso_step(pos, vel, pbest, gbest, lo, hi, gen, w=0.6, c1=2.0, c2=2.0, scratch=None):
    """The same update from torch ops. With ``scratch`` (three buffers shaped like pos) it
    allocates nothing, as a careful user would write it: fresh temporaries of this size cost
    page faults whose price swings 2x between processes."""
    if scratch is None:
        scratch = [torch.empty_like(pos) for _ in range(3)]
    r1, r2, tmp = scratch
    torch.rand(pos.shape, generator=gen, out=r1)
    torch.rand(pos.shape, generator=gen, out=r2)
    vel.mul_(w)
    torch.sub(pbest, pos, out=tmp)
    vel.addcmul_(r1, tmp, value=c1)
    torch.sub(gbest[:, None].expand_as(pos), pos, out=tmp)
    vel.addcmul_(r2, tmp, value=c2)
    pos.add_(vel)
    out = (pos < lo[:, None]) | (pos > hi[:, None])
    torch.maximum(pos, lo[:, None], out=pos)
    torch.minimum(pos, hi[:, None], out=pos)
    vel.masked_fill_(out, 0.0)


def composed_pso_run(f, B, N, D, T, b, seed=0, device="cpu"):
    gen = torch.Generator(device).manual_seed(seed)
    lo, hi = torch.full((B, D), -b, device=device), torch.full((B, D), b, device=device)
    pos = lo[:, None] + torch.rand(B, N, D, generator=gen, device=device) * (hi - lo)[:, None]
    vel = torch.zeros_like(pos)
    scratch = [torch.empty_like(pos) for _ in range(3)]
    fit = f(pos)
    pbest, pbest_fit = pos.clone(), fit.clone()
    gi = pbest_fit.argmin(1)
    rows = torch.arange(B, device=device)
    gbest, gbest_fit = pbest[rows, gi], pbest_fit.gather(1, gi[:, None])[:, 0]
    for _ in range(T):
        composed_pso_step(pos, vel, pbest, gbest, lo, hi, gen, scratch=scratch)
        fit = f(pos)
        better = fit < pbest_fit
        pbest_fit = torch.where(better, fit, pbest_fit)
        pbest = torch.where(better[..., None], pos, pbest)
        gi = pbest_fit.argmin(1)
        gbest, gbest_fit = pbest[rows, gi], pbest_fit.gather(1, gi[:, None])[:, 0]
    return gbest_fit


def composed_de_generation(pop, fit, lo, hi, f, gen, F=0.5):
    B, N, D = pop.shape
    # Three distinct partners != i per member, drawn as the kernel does: an index below N - k,
    # moved past the k already taken (in increasing order).
    taken = torch.arange(N, device=pop.device).expand(B, N)[..., None]
    picks = []
    for k in range(1, 4):
        r = torch.randint(0, N - k, (B, N), generator=gen, device=pop.device)
        for j in range(k):
            r = r + (r >= taken[..., j]).long()
        picks.append(r)
        taken = torch.cat([taken, r[..., None]], -1).sort(-1).values
    take = lambda k: pop.gather(1, picks[k][..., None].expand(B, N, D))
    trial = take(0) + F * (take(1) - take(2))
    out = (trial < lo[:, None]) | (trial > hi[:, None])
    trial = torch.where(out, lo[:, None] + torch.rand(trial.shape, generator=gen, device=pop.device) * (hi - lo)[:, None], trial)
    tf = f(trial)
    better = tf <= fit
    return torch.where(better[..., None], trial, pop), torch.where(better, tf, fit)


def pyadv_de_generation(pop, fit, lo, hi, f, step):
    best = fit.argmin(1)
    trial = ops.de_trial(pop, best, lo, hi, F=0.5, CR=1.0, seed=0, step=step)
    ops.de_select(trial, f(trial), pop, fit)


def torch_sparse_perturb(base, idx, values):
    B, P = base.shape
    N = values.shape[1]
    out = base[:, None].expand(B, N, P).clone()
    out.scatter_add_(2, idx[:, None].expand(B, N, idx.shape[1]), values)
    return out.clamp_(0, 1).view(B * N, P)


def build_parser():
    return parser(__doc__)


def run(args) -> dict:
    dev = torch.device(args.device)
    rounds = 3 if args.quick else args.repeat
    payload = {"family": "swarm", "machine": machine(args.threads, dev)}
    pyswarms_ok, scipy_ok = installed("pyswarms"), installed("scipy")
    payload["peers_missing"] = [k for k, ok in (("pyswarms", pyswarms_ok), ("scipy", scipy_ok)) if not ok]

    # --- pso_step
    B, N, D = 256, 200, 20
    g = torch.Generator().manual_seed(0)
    gd = torch.Generator(dev).manual_seed(0)
    lo, hi = torch.full((B, D), -5.12, device=dev), torch.full((B, D), 5.12, device=dev)
    pos = ((torch.rand(B, N, D, generator=g) * 2 - 1) * 5.12).to(dev)
    vel, pbest, gbest = torch.zeros_like(pos), pos.clone(), pos[:, 0].clone()
    p1, v1, p2, v2 = pos.clone(), vel.clone(), pos.clone(), vel.clone()
    step = [0]

    def pyadv_step():
        step[0] += 1
        ops.pso_step(p1, v1, pbest, gbest, lo, hi, seed=0, step=step[0])

    scratch = [torch.empty_like(pos) for _ in range(3)]
    t = interleaved({"pyadv": pyadv_step,
                     "composed_torch": lambda: composed_pso_step(p2, v2, pbest, gbest, lo, hi, gd, scratch=scratch)},
                    rounds=rounds, device=dev)
    elems = B * N * D
    payload["pso_step"] = {
        "B": B, "N": N, "D": D, "pyadv_s": t["pyadv"]["median_s"], "composed_torch_s": t["composed_torch"]["median_s"],
        "pyadv_particle_dims_per_s": elems / t["pyadv"]["median_s"],
        "speedup_vs_composed_torch": t["pyadv"]["ratios_to"]["composed_torch"],
    }
    if pyswarms_ok:
        logging.getLogger("pyswarms").setLevel(logging.ERROR)
        from pyswarms.backend.handlers import BoundaryHandler, VelocityHandler
        from pyswarms.backend.operators import compute_position, compute_velocity
        from pyswarms.backend.swarms import Swarm

        p0 = pos[0].cpu().numpy().astype(np.float64)
        sw = Swarm(position=p0, velocity=np.zeros((N, D)), options={"c1": 2, "c2": 2, "w": 0.6},
                   pbest_pos=p0.copy(), best_pos=p0[0].copy())
        vh, bh = VelocityHandler(strategy="unmodified"), BoundaryHandler(strategy="nearest")
        bounds = (np.full(D, -5.12), np.full(D, 5.12))

        def pyswarms_one_swarm():
            sw.velocity = compute_velocity(sw, None, vh, bounds)
            sw.position = compute_position(sw, bounds, bh)

        t_ps = interleaved({"pyswarms": pyswarms_one_swarm}, rounds=rounds)["pyswarms"]["median_s"] * B  # B swarms
        payload["pso_step"].update(pyswarms_s_for_all_swarms=t_ps, speedup_vs_pyswarms=t_ps / t["pyadv"]["median_s"])
    ps_step = payload["pso_step"]
    print(f"pso_step   {elems / t['pyadv']['median_s'] / 1e6:8.1f} M particle-dims/s; "
          f"{ps_step['speedup_vs_composed_torch']:.1f}x composed torch"
          + (f", {ps_step['speedup_vs_pyswarms']:.1f}x pyswarms' update" if pyswarms_ok else ""))

    # --- whole optimisation: 256 Rastrigin-20 problems, N = 200, T = 100
    T, b = 20 if args.quick else 100, 5.12
    lo_b, hi_b = torch.full((D,), -b, device=dev), torch.full((D,), b, device=dev)

    def pyadv_run():
        return PSO(rastrigin, lo_b, hi_b, batch=B, n_particles=N, seed=0).run(T).best_fit

    t_run = interleaved({"pyadv": pyadv_run,
                         "composed_torch": lambda: composed_pso_run(rastrigin, B, N, D, T, b, device=dev)},
                        rounds=max(1, rounds // 3), warmup=1, min_call_s=0, device=dev)
    res = pyadv_run()
    payload["pso_run"] = {
        "problems": B, "N": N, "D": D, "T": T, "pyadv_s": t_run["pyadv"]["median_s"],
        "composed_torch_s": t_run["composed_torch"]["median_s"],
        "pyadv_problems_per_s": B / t_run["pyadv"]["median_s"],
        "speedup_vs_composed_torch": t_run["pyadv"]["ratios_to"]["composed_torch"],
        "pyadv_median_best": float(res.median()),
    }
    if pyswarms_ok:
        import pyswarms as ps

        np_rastrigin = lambda x: 10 * x.shape[-1] + (x**2 - 10 * np.cos(2 * np.pi * x)).sum(-1)
        k = 4 if args.quick else 16
        t0 = time.perf_counter()
        for s in range(k):
            np.random.seed(s)
            opt = ps.single.GlobalBestPSO(n_particles=N, dimensions=D, options={"c1": 2, "c2": 2, "w": 0.6},
                                          bounds=(np.full(D, -b), np.full(D, b)))
            opt.optimize(np_rastrigin, iters=T, verbose=False)
        per_problem = (time.perf_counter() - t0) / k
        payload["pso_run"].update(pyswarms_s_per_problem=per_problem, pyswarms_problems_timed=k,
                                  pyswarms_s_all_problems=per_problem * B,
                                  speedup_vs_pyswarms_one_by_one=per_problem * B / t_run["pyadv"]["median_s"])
    pr = payload["pso_run"]
    print(f"pso_run    256 problems in {t_run['pyadv']['median_s']:.3f} s; "
          + (f"{pr['speedup_vs_pyswarms_one_by_one']:.0f}x pyswarms one by one "
             f"({1e3 * pr['pyswarms_s_per_problem']:.1f} ms/problem, timed on {pr['pyswarms_problems_timed']}), "
             if pyswarms_ok else "")
          + f"{pr['speedup_vs_composed_torch']:.1f}x the composed torch PSO")

    # --- one DE generation, B = 256, N = 400, D = 5
    Bd, Nd, Dd = 256, 400, 5
    lo_d, hi_d = torch.zeros(Bd, Dd, device=dev), torch.ones(Bd, Dd, device=dev)
    sph = lambda x: ((x - 0.3) ** 2).sum(-1)
    pop = torch.rand(Bd, Nd, Dd, generator=g).to(dev)
    fit = sph(pop)
    pop1, fit1 = pop.clone(), fit.clone()
    gen_step = [0]

    def pyadv_gen():
        gen_step[0] += 1
        pyadv_de_generation(pop1, fit1, lo_d, hi_d, sph, gen_step[0])

    state = [pop.clone(), fit.clone()]

    def composed_gen():
        state[0], state[1] = composed_de_generation(state[0], state[1], lo_d, hi_d, sph, gd)

    t_de = interleaved({"pyadv": pyadv_gen, "composed_torch": composed_gen}, rounds=rounds, device=dev)
    payload["de_generation"] = {
        "B": Bd, "N": Nd, "D": Dd, "pyadv_s": t_de["pyadv"]["median_s"],
        "composed_torch_s": t_de["composed_torch"]["median_s"],
        "pyadv_problem_generations_per_s": Bd / t_de["pyadv"]["median_s"],
        "speedup_vs_composed_torch": t_de["pyadv"]["ratios_to"]["composed_torch"],
    }
    if scipy_ok:
        from scipy.optimize import differential_evolution

        np_sph = lambda x: ((x - 0.3) ** 2).sum(0)  # vectorized: x is [D, S]
        G = 20
        t0 = time.perf_counter()
        for s in range(4):
            differential_evolution(np_sph, [(0, 1)] * Dd, strategy="rand1bin", maxiter=G,
                                   init=np.random.default_rng(s).random((Nd, Dd)), mutation=0.5, recombination=1.0,
                                   polish=False, tol=0, seed=s, updating="deferred", vectorized=True)
        scipy_gen = (time.perf_counter() - t0) / 4 / (G + 1) * Bd  # per generation, all problems
        payload["de_generation"].update(scipy_s_all_problems=scipy_gen,
                                        speedup_vs_scipy=scipy_gen / t_de["pyadv"]["median_s"])
    de = payload["de_generation"]
    print(f"de_gen     {1e3 * t_de['pyadv']['median_s']:.2f} ms; {de['speedup_vs_composed_torch']:.1f}x composed torch"
          + (f", {de['speedup_vs_scipy']:.0f}x scipy (vectorized, one problem at a time)" if scipy_ok else ""))

    # --- sparse_perturb
    Bs, Ns, m, P = 64, 200, 10, 3072
    base = torch.rand(Bs, P, generator=g).to(dev)
    idx = torch.stack([torch.randperm(P, generator=g)[:m] for _ in range(Bs)]).to(dev)
    values = (torch.randn(Bs, Ns, m, generator=g) * 0.1).to(dev)
    torch.testing.assert_close(ops.sparse_perturb(base, idx, values), torch_sparse_perturb(base, idx, values))
    buf_p = torch.empty(Bs * Ns, P, device=dev)
    buf_t = torch.empty(Bs, Ns, P, device=dev)

    def torch_into_buffer():
        buf_t.copy_(base[:, None].expand(Bs, Ns, P))
        buf_t.scatter_add_(2, idx[:, None].expand(Bs, Ns, m), values)
        return buf_t.clamp_(0, 1)

    t_sp = interleaved({"pyadv": lambda: ops.sparse_perturb(base, idx, values),
                        "torch": lambda: torch_sparse_perturb(base, idx, values),
                        "pyadv_out": lambda: ops.sparse_perturb(base, idx, values, out=buf_p),
                        "torch_out": torch_into_buffer}, rounds=rounds, device=dev)
    sync(dev)
    out_bytes = Bs * Ns * P * 4
    payload["sparse_perturb"] = {
        "B": Bs, "N": Ns, "m": m, "P": P, "pyadv_s": t_sp["pyadv"]["median_s"], "torch_s": t_sp["torch"]["median_s"],
        "speedup_vs_torch": t_sp["pyadv"]["ratios_to"]["torch"], "pyadv_GBps_written": out_bytes / t_sp["pyadv"]["median_s"] / 1e9,
        "pyadv_out_s": t_sp["pyadv_out"]["median_s"], "torch_out_s": t_sp["torch_out"]["median_s"],
        "speedup_out_vs_torch_out": t_sp["pyadv_out"]["ratios_to"]["torch_out"],
        "speedup_out_vs_torch": t_sp["pyadv_out"]["ratios_to"]["torch"],
    }
    print(f"sparse_perturb {1e3 * t_sp['pyadv']['median_s']:.2f} ms ({payload['sparse_perturb']['pyadv_GBps_written']:.1f} GB/s "
          f"written); {payload['sparse_perturb']['speedup_vs_torch']:.1f}x torch expand+clone+scatter; into a reused "
          f"buffer {payload['sparse_perturb']['speedup_out_vs_torch_out']:.1f}x torch into its reused buffer, "
          f"{payload['sparse_perturb']['speedup_out_vs_torch']:.1f}x torch allocating")
    payload["goals"] = {"pso_step_vs_composed_torch": ">= 5", "pso_run_vs_pyswarms_one_by_one": ">= 20",
                        "sparse_perturb_vs_torch": ">= 2"}
    return payload


def summary(payload) -> list[dict]:
    def vs(entry, **names):
        return {label: entry[key] for label, key in names.items() if key in entry}

    s, r, d, sp = (payload[k] for k in ("pso_step", "pso_run", "de_generation", "sparse_perturb"))
    return [
        {"case": f"pso_step B={s['B']} N={s['N']} D={s['D']}", "rate": s["pyadv_particle_dims_per_s"] / 1e6,
         "unit": "M particle-dims/s", "vs": vs(s, composed_torch="speedup_vs_composed_torch",
                                               pyswarms="speedup_vs_pyswarms")},
        {"case": f"pso_run {r['problems']} Rastrigin-{r['D']}, T={r['T']}", "rate": r["pyadv_problems_per_s"],
         "unit": "problems/s", "vs": vs(r, composed_torch="speedup_vs_composed_torch",
                                        pyswarms="speedup_vs_pyswarms_one_by_one")},
        {"case": f"de_generation B={d['B']} N={d['N']} D={d['D']}", "rate": d["pyadv_problem_generations_per_s"],
         "unit": "problem-generations/s", "vs": vs(d, composed_torch="speedup_vs_composed_torch",
                                                   scipy="speedup_vs_scipy")},
        {"case": f"sparse_perturb B={sp['B']} N={sp['N']} m={sp['m']}", "rate": sp["pyadv_GBps_written"],
         "unit": "GB/s written", "vs": vs(sp, torch="speedup_vs_torch")},
    ]


if __name__ == "__main__":
    import sys

    script(sys.modules[__name__])
