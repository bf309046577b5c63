"""End-to-end adversarial dataset generation on digits with every registered attack
(benchmarks/results/generate.json): images/s through ``pyadv.data.generate`` (what
``pyadv generate`` runs after parsing its arguments), 2 threads, batch 256, and where the time
goes (the model's passes; metrics: L-norms, SSIM, PASS of every sample; writing shards and
manifest lines; the merged manifest and the card, once per job). Where torchattacks has the
attack, the same images through it and its ``save`` (one file, torch.save) in the same process,
with ``save_predictions=True``: a dataset records what the model predicts for each adversarial
(pyadv's manifest does), and that takes torchattacks' one forward of the adversarials.

    python benchmarks/generate.py [--images 256] [--device cpu] [--quick]
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from pyadv.attacks import available
from pyadv.bench.harness import alternating, machine, median_ratio, parser, results_path, script
from pyadv.bench.peers import installed
from pyadv.data import Part, generate, open_source
from pyadv.models import pretrained

FAMILY, SUITE, PEERS = "generate", "attacks", ("torchattacks",)

#: A dataset-sized budget per attack (all in 8-bit values: what a dataset stores).
BUDGET = {
    "fipso": {"m": 20, "pixels": "gradient", "n_particles": 50, "iters": 30},
    "fgs": {"eps": 0.1}, "fgv": {"eps": 0.1},
    "bim": {"eps": 0.1}, "illc": {"eps": 0.1},
    "pgd": {"eps": 0.1, "steps": 40}, "apgd": {"eps": 0.1, "steps": 100},
    "hotcold": {"classes": 9, "scales": [1.05]},
    "onepixel": {"pixels": 1, "pop_size": 100, "iters": 20, "stop": "first_success"},
    "sparse_rs": {"k": 10, "n_queries": 1000},
    "cw_l2": {"c": 0.01, "steps": 100, "search_steps": 5},
    "cw_linf": {"c": 0.01, "steps": 100},
    "cw_l0": {"c": 0.1, "steps": 50},
    "lbfgs": {"search_steps": 5, "max_iter": 50},
    "jsma": {"upsilon": 0.1},
    "substitute": {"initial": 150, "white_box_options": {"eps": 0.3}},
}


#: torchattacks' save as a dataset needs it: the adversarials' predicted labels saved with them
#: (which is its forward of the adversarials: save computes them only with return_verbose)
TA_SAVE = {"verbose": False, "return_verbose": True, "save_predictions": True}


def torchattacks_twin(name, model, o):
    import torchattacks as ta

    e = o.get("eps", 0.1)
    return {"fgs": lambda: ta.FGSM(model, eps=e),
            "bim": lambda: ta.BIM(model, eps=e, alpha=1 / 255, steps=0),
            "pgd": lambda: ta.PGD(model, eps=e, alpha=2.5 * e / o.get("steps", 10), steps=o.get("steps", 10)),
            "apgd": lambda: ta.APGD(model, eps=e, steps=o.get("steps", 100), loss="ce")}.get(name)


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2, help="pyadv and torchattacks alternate within each")
    ap.add_argument("--only", nargs="+", metavar="ATTACK", choices=available(), help="these attacks only")
    return ap


def run(args) -> dict:
    if args.quick:
        args.images, args.batch_size, args.rounds = 32, 32, 1
    dev = torch.device(args.device)
    model = pretrained("digits-cnn", progress=False).to(dev)
    source = open_source("digits:test")
    work = Path(tempfile.mkdtemp(prefix="pyadv-bench-generate-"))
    results = {}
    try:
        for name in args.only or available():
            opts = {**BUDGET.get(name, {}), "quantize": True}
            # warm-up: oneDNN primitives and the runner's plan, as a long job would have them
            generate(work / f"warm-{name}", [Part(name, opts)], model, source, model_spec="digits-cnn",
                     batch_size=8, limit=8, progress=False, device=dev)
            make = torchattacks_twin(name, model, opts) if installed("torchattacks") else None
            x = source.images(torch.arange(args.images)).to(dev)
            y = source.labels[:args.images].to(dev)
            if make is not None:
                atk = make()
                atk.save(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:8], y[:8]), batch_size=8),
                         save_path=str(work / "warm.pt"), **TA_SAVE)
            runs = []

            def call(who, r):
                if who == "pyadv":
                    runs.append(generate(work / f"{name}-{r}", [Part(name, opts)], model, source,
                                         model_spec="digits-cnn", batch_size=args.batch_size, limit=args.images,
                                         progress=False, device=dev))
                else:
                    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                                         batch_size=args.batch_size)
                    atk.save(loader, save_path=str(work / f"ta-{name}.pt"), **TA_SAVE)

            times = alternating(["pyadv", "torchattacks"] if make is not None else ["pyadv"], args.rounds, call, dev)
            s = min(runs, key=lambda v: v["seconds"])  # the run least disturbed by the machine
            # the whole call, end to end; "per_shard" leaves out the once-per-job manifest and
            # card, which a dataset of many shards pays once: what a large job tends to
            shards_s = s["seconds"] - s["finish_s"]
            e = {"measured": time.strftime("%Y-%m-%d %H:%M"), "options": opts, "images": args.images,
                 "samples": s["samples"], "seconds": s["seconds"],
                 "images_per_s": args.images / s["seconds"],
                 "share": {k[:-2]: s[k] / s["seconds"] for k in ("model_s", "metrics_s", "write_s", "finish_s")},
                 "outside_model_share": 1 - s["model_s"] / s["seconds"],
                 "outside_model_share_per_shard": 1 - s["model_s"] / shards_s,
                 # every round's, beside the least disturbed one's: how far the machine moved them
                 "rounds": [{"images_per_s": args.images / v["seconds"],
                             "outside_model_share": 1 - v["model_s"] / v["seconds"],
                             "outside_model_share_per_shard": 1 - v["model_s"] / (v["seconds"] - v["finish_s"])}
                            for v in runs]}
            if make is not None:
                e["torchattacks"] = {"images_per_s": args.images / min(times["torchattacks"]),
                                     "seconds": min(times["torchattacks"]),
                                     "time_ratio_to_pyadv": median_ratio(times, "torchattacks")}
            else:
                e["torchattacks"] = "no twin" if installed("torchattacks") else "not installed"
            results[name] = e
            ta = e.get("torchattacks")
            print(f"{name:8s} {e['images_per_s']:8.1f} img/s  {s['samples']:5d} samples  outside the model "
                  f"{e['outside_model_share']:.1%} (metrics {e['share']['metrics']:.1%}, writes "
                  f"{e['share']['write']:.1%}, manifest and card {e['share']['finish']:.1%}; per shard "
                  f"{e['outside_model_share_per_shard']:.1%}, rounds {_spread(e['rounds'])})"
                  + (f"  torchattacks+save {ta['images_per_s']:.1f} img/s "
                                                   f"(x{ta['time_ratio_to_pyadv']:.2f} pyadv's time)"
                                                   if isinstance(ta, dict) else ""), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"machine": machine(args.threads, dev), "batch_size": args.batch_size,
            "attacks": _in_registry_order({**_kept(args), **results})}


def _spread(rounds: list[dict]) -> str:
    v = [r["outside_model_share_per_shard"] for r in rounds]
    return f"{min(v):.1%}-{max(v):.1%}"


def _in_registry_order(entries: dict) -> dict:
    order = {name: i for i, name in enumerate(available())}
    return dict(sorted(entries.items(), key=lambda kv: order.get(kv[0], len(order))))


def _kept(args) -> dict:
    """With ``--only``, the other attacks' entries of the results file it replaces (each entry
    carries the time of its own run), so that a partial rerun does not erase the rest."""
    path = results_path(FAMILY, args.out)
    if not args.only or not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if old.get("batch_size") != args.batch_size:
        return {}
    return {k: v for k, v in old.get("attacks", {}).items() if k not in args.only and isinstance(v, dict)
            and v.get("images") == args.images}


def summary(payload) -> list[dict]:
    rows = []
    for name, e in payload["attacks"].items():
        ta = e["torchattacks"]
        rows.append({"case": f"generate {name}", "rate": e["images_per_s"], "unit": "images/s",
                     "vs": {"torchattacks+save": ta["time_ratio_to_pyadv"]} if isinstance(ta, dict) else {},
                     "outside_model": e["outside_model_share"]})
    return rows


if __name__ == "__main__":
    import sys

    script(sys.modules[__name__])
