"""Every attack in the registry at float32, in bf16 (``precision="bf16"``: the search under
autocast, every reported number checked in float32) and compiled float32 (``compile="always"``,
inductor), on the digits CNN and on digits-m's ResNet-32 (benchmarks/results/precision.json).

First the passes themselves: images/s of a forward and of a forward and backward of 256
images, the model as given in float32 and the runner's search copy in float32 and bf16 (what
bf16 can give an attack at most). Then per attack and configuration: images/s (the compiled one without its compilation, reported
apart as ``compile_s``), success, the median L2 / L-inf / L0 of the successes, the images
whose bf16 success the float32 check refuted (``fallback``: attacked again in float32, their
time included), and the share of time outside the model's passes. The configurations of an
attack alternate within each round. Budgets are ``pyadv.bench.generate.BUDGET``'s. Goals on
a CPU with AVX-512 BF16: bf16 >= 3x float32 for the forward-bound attacks (FIPSO, OnePixel,
SparseRS), >= 2.5x for PGD, APGD and C&W L2; each with success within 1 point and the
median of the attack's own norm (the one it minimises or is bounded in) within 2 % of
float32's. The same criterion, met by every attack "auto" may run reduced, would make "auto"
the default precision (``auto_default_ok``).

    python benchmarks/precision.py [--images 64] [--rgb-images 4] [--rgb-attacks ...] [--only ...]
"""
from __future__ import annotations

import statistics

import torch

from pyadv.attacks import available, create
from pyadv.bench.generate import BUDGET
from pyadv.bench.harness import alternating, interleaved, machine, parser, script

FAMILY, SUITE, PEERS = "precision", "attacks", ()
CONFIGS = {"fp32": {}, "bf16": {"precision": "bf16"}, "fp32_compiled": {"compile": "always"}}
FORWARD_BOUND = ("fipso", "onepixel", "sparse_rs")
GRADIENT = ("pgd", "apgd", "cw_l2")
#: the norm each attack minimises or is bounded in: the one whose median is judged
OWN_NORM = {"cw_l2": "l2", "lbfgs": "l2", "fipso": "l2", "hotcold": "l2", "cw_linf": "linf", "cw_l0": "l0",
            "jsma": "l0", "onepixel": "l0", "sparse_rs": "l0"}  # the eps-bounded others: linf
#: what ResNet-32 runs by default (x10 the digits CNN's cost per image): the attacks with goals
RGB_DEFAULT = FORWARD_BOUND + GRADIENT


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--images", type=int, default=64, help="digits test images for the digits CNN")
    ap.add_argument("--rgb-images", type=int, default=4, help="digits-m test images for ResNet-32 (0: skip it)")
    ap.add_argument("--rgb-attacks", nargs="*", default=list(RGB_DEFAULT),
                    help="attacks run on ResNet-32 ('all': the registry)")
    ap.add_argument("--only", nargs="*", default=None, help="attacks to run (default: the registry)")
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--rounds", type=int, default=1, help="rounds; configurations alternate within each")
    return ap


def _median(v: torch.Tensor) -> float | None:
    return float(v.float().median()) if len(v) else None


def _row(r, seconds: float, warm) -> dict:
    """One configuration's figures; a compilation that happened in the warm-up (the runner's
    compiled graphs are per process) is reported with the timed call's."""
    ok = r.success
    compile_s = r.profile.get("compile_s", 0.0)
    run_s = max(seconds - compile_s, 1e-9)
    return {"seconds": run_s, "images_per_s": len(ok) / run_s,
            "compile_s": compile_s + warm.profile.get("compile_s", 0.0),
            "compilations": r.profile.get("compilations", 0) + warm.profile.get("compilations", 0),
            "compiled_used": {**warm.profile.get("compiled_used", {}), **r.profile.get("compiled_used", {})},
            "success": float(ok.float().mean()),
            "median_l2": _median(r.l2[ok]), "median_linf": _median(r.linf[ok]), "median_l0": _median(r.l0[ok]),
            "fallback": r.precision.get("fallback", 0), "failed_check": r.precision.get("failed_check", 0),
            "band": r.precision.get("band", 0.0), "search": r.precision.get("search"),
            "queries_per_image": float(r.queries.float().mean()),
            "outside_model_share": 1 - r.profile["model_s"] / max(r.profile["total_s"], 1e-9)}


def _close(a, b, rel: float) -> bool:
    return a is None or b is None or abs(a - b) <= rel * max(abs(b), 1e-12)


def judge(name: str, rows: dict) -> dict:
    """bf16 against float32: speed-up, success within 1 point, the median of the attack's own
    norm (OWN_NORM) within 2 %; and the goal the issue sets for the attack's kind (None where
    it sets none)."""
    base, bf = rows.get("fp32"), rows.get("bf16")
    if base is None or bf is None:
        return {}
    speed = base["seconds"] / bf["seconds"]
    norm = "median_" + OWN_NORM.get(name, "linf")
    agree = abs(bf["success"] - base["success"]) <= 0.01 + 1e-9 and _close(bf[norm], base[norm], 0.02)
    goal = 3.0 if name in FORWARD_BOUND else 2.5 if name in GRADIENT else None
    out = {"bf16_speedup": speed, "bf16_agrees": agree, "judged_norm": norm, "goal_speedup": goal,
           "goal_met": None if goal is None else bool(speed >= goal and agree)}
    if "fp32_compiled" in rows:
        out["compiled_speedup"] = base["seconds"] / rows["fp32_compiled"]["seconds"]
    return out


def pass_rates(model, x, y, chunk: int, dev) -> dict:
    """Images/s of one forward and of one forward and backward (the input gradient) of
    ``chunk`` images through the runner: the model as given in float32, the search copy in
    float32 and in bf16 (the ceiling of what bf16 can give an attack); interleaved rounds."""
    from pyadv.attacks._losses import cross_entropy
    from pyadv.attacks._runner import ModelRunner, timing_batch

    xs = timing_batch(x, chunk)
    ys, rows = y[:1].expand(chunk).contiguous(), torch.arange(chunk, device=x.device)
    fns = {}
    for name, copy_, prec in (("model_fp32", False, "fp32"), ("search_copy_fp32", True, "fp32"),
                              ("search_copy_bf16", True, "bf16")):
        r = ModelRunner(model, xs, chunk, num_classes=int(y.max()) + 1, chunk_size=chunk, search_copy=copy_,
                        precision=prec)
        fns[f"{name}_forward"] = lambda r=r: r.probs(xs, rows)
        fns[f"{name}_forward_backward"] = lambda r=r: r.loss_grad(xs, rows, cross_entropy, ys)
    timed = interleaved(fns, rounds=5, device=dev)
    return {k: chunk / v["median_s"] for k, v in timed.items()}


def run_model(model_name: str, n: int, attacks: list[str], configs: list[str], rounds: int, dev) -> dict:
    from pyadv.data import digits, digits_m
    from pyadv.models import pretrained

    model = pretrained(model_name, progress=False).eval().to(dev)
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = digits_m("test") if model_name.startswith("digits-m") else digits("test", 28)
    x, y = x[:n].contiguous().to(dev), y[:n].to(dev)
    out = {"passes_256": pass_rates(model, x, y, 256, dev)}
    print("   passes, images/s: " + ", ".join(f"{k} {v:.0f}" for k, v in out["passes_256"].items()), flush=True)
    for name in attacks:
        print(f"== {model_name} {name}", flush=True)
        made = {c: create(name, model, **BUDGET.get(name, {}), **CONFIGS[c]) for c in configs}
        w = min(n, 4)
        warm = {c: atk(x[:w], y[:w]) for c, atk in made.items()}  # the runner's plan, oneDNN, compiling
        last = {}

        def call(c, _round):
            last[c] = made[c](x, y)

        times = alternating(configs, rounds, call, dev)
        rows = {c: _row(last[c], statistics.median(times[c]), warm[c]) for c in configs}
        rows["judged"] = judge(name, rows)
        out[name] = rows
        j = rows["judged"]
        print("   " + "  ".join(f"{c} {rows[c]['images_per_s']:.1f} img/s succ {rows[c]['success']:.3f}"
                                for c in configs) + (f"  bf16 {j['bf16_speedup']:.2f}x agree={j['bf16_agrees']}"
                                                     if j else ""), flush=True)
    return out


def run(args) -> dict:
    dev = torch.device(args.device)
    names = [a for a in available() if args.only is None or a in args.only]
    if args.quick:
        args.images, args.rgb_images = 8, 2
    rgb = names if args.rgb_attacks == ["all"] else [a for a in names if a in args.rgb_attacks]
    models = {"digits-cnn": run_model("digits-cnn", args.images, names, args.configs, args.rounds, dev)}
    if args.rgb_images and rgb:
        models["digits-m-resnet32"] = run_model("digits-m-resnet32", args.rgb_images, rgb, args.configs,
                                                args.rounds, dev)
    from pyadv.attacks import attack_class

    judged = [r["judged"] for m in models.values() for a, r in m.items()
              if a != "passes_256" and r.get("judged") and attack_class(a).auto_reduced]
    return {"machine": machine(args.threads, dev), "images": {"digits-cnn": args.images,
                                                              "digits-m-resnet32": args.rgb_images},
            "rounds": args.rounds, "budgets": {a: BUDGET.get(a, {}) for a in names}, "models": models,
            "auto_default_ok": bool(judged) and all(j["bf16_agrees"] for j in judged),
            "goals": {"forward_bound": ">= 3x float32 (bf16)", "gradient": ">= 2.5x float32 (bf16)",
                      "each": "success within 1 point, median norms within 2 %"}}


def summary(payload) -> list[dict]:
    rows = []
    for model, entries in payload["models"].items():
        for name, e in entries.items():
            if name == "passes_256":
                continue
            bf, j = e.get("bf16"), e.get("judged", {})
            if bf is None:
                continue
            rows.append({"case": f"{model}/{name}/bf16", "rate": bf["images_per_s"], "unit": "images/s",
                         "vs": {"fp32": j.get("bf16_speedup")}, "success": bf["success"],
                         "outside_model": bf["outside_model_share"]})
    return rows


if __name__ == "__main__":
    import sys

    script(sys.modules[__name__])
