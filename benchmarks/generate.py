"""End-to-end adversarial dataset generation on digits with every registered attack
(benchmarks/results/generate.json): images/s through ``pyadv.data.generate`` (what
``pyadv generate`` runs after parsing its arguments), 2 threads, batch 256, and where the time
goes (the model's passes; metrics: L-norms, SSIM, PASS of every sample; writing shards and
manifest lines). Where torchattacks has the attack, the same images through it and its
``save`` (one file, torch.save) in the same process.

    python benchmarks/generate.py [--images 256] [--quick]
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import machine, parser, setup_threads, write_results
from pyadv.attacks import available
from pyadv.data import Part, generate, open_source
from pyadv.models import pretrained

#: A dataset-sized budget per attack (all in 8-bit values: what a dataset stores).
BUDGET = {
    "fipso": {"m": 20, "pixels": "gradient", "n_particles": 50, "iters": 30},
    "fgs": {"eps": 0.1}, "fgv": {"eps": 0.1},
    "bim": {"eps": 0.1}, "illc": {"eps": 0.1},
    "pgd": {"eps": 0.1, "steps": 40}, "apgd": {"eps": 0.1, "steps": 100},
    "hotcold": {"classes": 9, "scales": [1.05]},
}


def torchattacks_twin(name, model, o):
    import torchattacks as ta

    e = o.get("eps", 0.1)
    return {"fgs": lambda: ta.FGSM(model, eps=e),
            "bim": lambda: ta.BIM(model, eps=e, alpha=1 / 255, steps=0),
            "pgd": lambda: ta.PGD(model, eps=e, alpha=2.5 * e / o.get("steps", 10), steps=o.get("steps", 10)),
            "apgd": lambda: ta.APGD(model, eps=e, steps=o.get("steps", 100), loss="ce")}.get(name)


def main():
    ap = parser("End-to-end dataset generation with every attack (benchmarks/results/generate.json)")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2, help="pyadv and torchattacks alternate within each")
    args = ap.parse_args()
    if args.quick:
        args.images, args.batch_size, args.rounds = 32, 32, 1
    setup_threads(args.threads)
    model = pretrained("digits-cnn", progress=False)
    source = open_source("digits:test")
    work = Path(tempfile.mkdtemp(prefix="pyadv-bench-generate-"))
    results = {}
    try:
        for name in available():
            opts = {**BUDGET.get(name, {}), "quantize": True}
            # warm-up: oneDNN primitives and the runner's plan, as a long job would have them
            generate(work / f"warm-{name}", [Part(name, opts)], model, source, model_spec="digits-cnn",
                     batch_size=8, limit=8, progress=False)
            make = None
            try:
                make = torchattacks_twin(name, model, opts)
            except ImportError:
                pass
            x = source.images(torch.arange(args.images))
            y = source.labels[:args.images]
            if make is not None:
                atk = make()
                atk.save(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:8], y[:8]), batch_size=8),
                         save_path=str(work / "warm.pt"), verbose=False)
            runs, ta_times = [], []
            for r in range(args.rounds):  # alternating, so a drifting machine slows both alike
                order = ["pyadv", "ta"] if r % 2 == 0 else ["ta", "pyadv"]
                for who in order:
                    if who == "pyadv":
                        runs.append(generate(work / f"{name}-{r}", [Part(name, opts)], model, source,
                                             model_spec="digits-cnn", batch_size=args.batch_size, limit=args.images,
                                             progress=False))
                    elif make is not None:
                        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                                             batch_size=args.batch_size)
                        t0 = time.perf_counter()
                        atk.save(loader, save_path=str(work / f"ta-{name}.pt"), verbose=False)
                        ta_times.append(time.perf_counter() - t0)
            s = min(runs, key=lambda v: v["seconds"])  # the run least disturbed by the machine
            e = {"options": opts, "images": args.images, "samples": s["samples"], "seconds": s["seconds"],
                 "images_per_s": args.images / s["seconds"],
                 "share": {k[:-2]: s[k] / s["seconds"] for k in ("model_s", "metrics_s", "write_s")},
                 "outside_model_share": 1 - s["model_s"] / s["seconds"]}
            if make is not None:
                e["torchattacks"] = {"images_per_s": args.images / min(ta_times), "seconds": min(ta_times),
                                     "time_ratio_to_pyadv": statistics.median(
                                         t / p["seconds"] for t, p in zip(ta_times, runs))}
            else:
                e["torchattacks"] = "no twin"
            results[name] = e
            ta = e.get("torchattacks")
            print(f"{name:8s} {e['images_per_s']:8.1f} img/s  {s['samples']:5d} samples  outside the model "
                  f"{e['outside_model_share']:.1%} (metrics {e['share']['metrics']:.1%}, writes "
                  f"{e['share']['write']:.1%})" + (f"  torchattacks+save {ta['images_per_s']:.1f} img/s "
                                                   f"(x{ta['time_ratio_to_pyadv']:.2f} pyadv's time)"
                                                   if isinstance(ta, dict) else ""), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_results("generate", {"machine": machine(args.threads), "batch_size": args.batch_size,
                                      "attacks": results}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
