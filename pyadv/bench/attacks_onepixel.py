"""The one-pixel attack against torchattacks' OnePixel and ART's PixelAttack on the 8x8 digits
and on digits-m's ResNet-32 (benchmarks/results/attacks_onepixel.json, one entry per model).

All three run Su et al.'s DE with a population of about 400 and at most 100 generations, one
pixel, untargeted, stopping an image at its first misclassification (the two peers' callback
rule; pyadv's ``stop="first_success"``). The peers evolve one image at a time in NumPy/SciPy
style; pyadv evolves the whole batch at once through its runner. Implementations alternate
within each round; success is judged once for all by the model on the returned images.
pyadv also runs its bf16 search (``precision="bf16"``, every reported success checked in
float32) as ``pyadv_bf16``; the peers' ratios are to float32 pyadv, and to the bf16 run apart.

    python benchmarks/attacks_onepixel.py [--images 16] [--rgb-images 6] [--rounds 1] [--device cpu]
"""
from __future__ import annotations

import statistics

import numpy as np
import torch

from pyadv.attacks import OnePixel
from pyadv.bench import peers as peer_libs
from pyadv.bench.attacks_gradient import art_classifier, art_generate
from pyadv.bench.harness import TimedModel, alternating, machine, median_ratio, parser, script
from pyadv.data import digits
from pyadv.models import pretrained

FAMILY, SUITE, PEERS = "attacks_onepixel", "attacks", ("torchattacks", "art")
#: pyadv's configurations: float32 (what the peers are compared with), and its bf16 search
#: with every reported success checked in float32 (a margin the peers do not have)
PYADV = {"pyadv": "fp32", "pyadv_bf16": "bf16"}


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--images", type=int, default=16, help="8x8 digits test images")
    ap.add_argument("--rgb-images", type=int, default=6, help="digits-m test images (ResNet-32: ~10x the cost)")
    ap.add_argument("--rounds", type=int, default=1)
    return ap


def run(args) -> dict:
    if args.quick:
        args.images, args.rgb_images = 4, 0
    dev = torch.device(args.device)
    libs, missing = peer_libs.load()
    results = {}
    for model_name, n in (("digits8-cnn", args.images), ("digits-m-resnet32", args.rgb_images)):
        if n:
            print(f"== {model_name}, {n} images", flush=True)
            results[model_name] = compare(model_name, n, libs, args.rounds, dev)
    return {"machine": machine(args.threads, dev), "rounds": args.rounds,
            "budget": {"pixels": 1, "population": 400, "generations": 100, "stop": "first misclassification"},
            "peers_missing": missing, "results": results}


def compare(model_name: str, n_images: int, libs: dict, rounds: int, dev) -> dict:
    from pyadv.data import digits_m

    model = pretrained(model_name, progress=False).to(dev)
    x, y = digits("test", 8) if model_name == "digits8-cnn" else digits_m("test")
    x, y = x.to(dev), y.to(dev)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok][:n_images].contiguous(), y[ok][:n_images]
    # pyadv counts its own forwards and model time (its runner's search copy would bypass a wrapper)
    out = {}

    def pyadv_run(name, precision):
        def run(m):
            out[name] = OnePixel(model, pop_size=400, iters=100, stop="first_success", precision=precision)(x, y)
            return out[name].adv
        return run

    for precision in PYADV.values():  # warm-up: the runner's plan, once per process and precision
        OnePixel(model, pop_size=400, iters=2, precision=precision)(x[:2], y[:2])
    impl = {name: pyadv_run(name, precision) for name, precision in PYADV.items()}
    if "torchattacks" in libs:
        ta = libs["torchattacks"]
        impl["torchattacks"] = lambda m: ta.OnePixel(m, pixels=1, steps=100, popsize=400, inf_batch=400)(x, y)
    if "art" in libs:
        art = libs["art"]
        onehot = np.eye(10)[y.cpu().numpy()]
        impl["art"] = lambda m: art_generate(art.evasion.PixelAttack(
            art_classifier(art, m, dev, tuple(x.shape[1:])), th=1, es=1, max_iter=100, verbose=False), x, y=onehot)
    rows, timed = {}, {}

    def call(name, r):
        timed[name] = TimedModel(model).eval()
        rows[name] = impl[name](timed[name])

    times = alternating(list(impl), rounds, call, dev)
    res = {"images": len(x)}
    for name in impl:
        adv = rows[name]
        t = times[name][-1]
        with torch.no_grad():
            fooled = model(adv.float()).argmax(1) != y
        changed = (adv.float() != x).any(1).flatten(1).sum(1)
        if name in PYADV:
            r = out[name]
            images, model_s = int(r.queries.sum()), r.profile["model_s"]
        else:
            images, model_s = timed[name].images, timed[name].seconds
        med = statistics.median(times[name])
        e = {"success": float(fooled.float().mean()), "successes": int(fooled.sum()),
             "max_pixels_changed": int(changed.max()), "forward_images": images,
             "queries_per_success": images / max(int(fooled.sum()), 1),
             "outside_forward_share": 1 - model_s / t, "time_s": med, "images_per_s": len(x) / med}
        if name != "pyadv":
            e["time_ratio_to_pyadv"] = median_ratio(times, name)
        if name not in PYADV and "pyadv_bf16" in times:
            e["time_ratio_to_pyadv_bf16"] = median_ratio(times, name, "pyadv_bf16")
        res[name] = e
        print(f"  {name:13s} {med:8.1f} s  {len(x) / med:8.3f} img/s  success {e['successes']}/{len(x)}  "
              f"forwards {e['forward_images']}  outside forwards {e['outside_forward_share']:.1%}", flush=True)
    return res


def summary(payload) -> list[dict]:
    rows = []
    for model_name, entry in payload["results"].items():
        ours = entry["pyadv"]
        vs = {k: v["time_ratio_to_pyadv"] for k, v in entry.items() if k not in ("images", *PYADV)}
        rows.append({"case": f"onepixel {model_name}", "rate": ours["images_per_s"], "unit": "images/s", "vs": vs,
                     "success": ours["success"], "outside_model": ours["outside_forward_share"]})
    return rows


if __name__ == "__main__":
    import sys

    script(sys.modules[__name__])
