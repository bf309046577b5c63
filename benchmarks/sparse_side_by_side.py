"""FIPSO, OnePixel and SparseRS side by side at an equal pixel budget k and an equal query
budget per image, on the digits CNN and on digits-m's ResNet-32
(benchmarks/results/sparse_side_by_side.json): success, median queries per success, median L2,
time. The table a user reads to choose a sparse attack.

Budgets: k pixels (FIPSO's m counts channel components, so m = k: at most k pixels on RGB,
exactly k on grey images); about Q model
queries per image: FIPSO with 100 particles for Q / 100 iterations (``stop="first_success"``,
pixels chosen by the loss gradient), OnePixel with 100 candidates for Q / 100 generations
(first success), SparseRS with ``n_queries = Q``.

    python benchmarks/sparse_side_by_side.py [--k 1 5 20]
"""
from __future__ import annotations

import statistics

import torch

from pyadv.bench.harness import machine, parser, setup_threads, write_results
from pyadv.attacks import FIPSO, OnePixel, SparseRS
from pyadv.data import digits, digits_m
from pyadv.models import pretrained


def main():
    ap = parser("FIPSO, OnePixel and SparseRS at equal pixel and query budgets "
                "(benchmarks/results/sparse_side_by_side.json)")
    ap.add_argument("--k", type=int, nargs="*", default=[1, 5, 20])
    args = ap.parse_args()
    # (model, data, images, queries per image): the ResNet-32 is ~10x the digits CNN's cost
    setups = [("digits-cnn", "digits", 32, 5000), ("digits-m-resnet32", "digits-m", 16, 2000)]
    if args.quick:
        args.k, setups = [5], [("digits-cnn", "digits", 4, 400)]
    setup_threads(args.threads)
    rows = {}
    for model_name, data, n_images, Q in setups:
        model = pretrained(model_name, progress=False)
        x, y = digits("test", 28) if data == "digits" else digits_m("test")
        with torch.no_grad():
            ok = model(x).argmax(1) == y
        x, y = x[ok][:n_images].contiguous(), y[ok][:n_images]
        attacks = {
            "fipso": lambda k: FIPSO(model, m=k, pixels="gradient", n_particles=100, iters=max(1, Q // 100),
                                     stop="first_success"),
            "onepixel": lambda k: OnePixel(model, pixels=k, pop_size=100, iters=max(1, Q // 100) - 1,
                                           stop="first_success"),
            "sparse_rs": lambda k: SparseRS(model, k=k, n_queries=Q),
        }
        SparseRS(model, k=2, n_queries=3)(x[:2], y[:2])  # warm-up: the runner's plan, once per process
        for k in args.k:
            for name, make in attacks.items():
                r = make(k)(x, y)
                s = r.success
                q = r.queries[s].float()
                key = f"{model_name}/{name}_k{k}"
                rows[key] = {
                    "model": model_name, "attack": name, "k": k, "images": len(x), "queries_per_image": Q,
                    "success": float(s.float().mean()), "successes": int(s.sum()),
                    "median_queries_per_success": float(q.median()) if len(q) else None,
                    "median_l2": float(r.l2[s].median()) if int(s.sum()) else None,
                    "max_pixels_changed": int((r.adv != r.x).any(1).flatten(1).sum(1).max()),
                    "time_s": r.time_s, "outside_model_share": 1 - r.profile["model_s"] / r.profile["total_s"],
                }
                e = rows[key]
                print(f"{model_name:18s} k={k:3d} {name:10s} success {e['successes']:3d}/{len(x)}  median queries "
                      f"{e['median_queries_per_success']}  median L2 {e['median_l2']}  {e['time_s']:.1f} s", flush=True)
    payload = {"machine": machine(args.threads), "results": rows,
               "median_success_by_attack": {n: statistics.median(v["success"] for v in rows.values()
                                                                  if v["attack"] == n)
                                            for n in ("fipso", "onepixel", "sparse_rs")}}
    print(f"wrote {write_results('sparse_side_by_side', payload, args.out)}")


if __name__ == "__main__":
    main()
