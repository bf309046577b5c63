"""The one-pixel attack against torchattacks' OnePixel and ART's PixelAttack on the 8x8 digits
and on digits-m's ResNet-32 (benchmarks/results/attacks_onepixel.json, one entry per model).

All three run Su et al.'s DE with a population of about 400 and at most 100 generations, one
pixel, untargeted, stopping an image at its first misclassification (the two peers' callback
rule; pyadv's ``stop="first_success"``). The peers evolve one image at a time in NumPy/SciPy
style; pyadv evolves the whole batch at once through its runner. Implementations alternate
within each round; success is judged once for all by the model on the returned images.

    python benchmarks/attacks_onepixel.py [--images 16] [--rgb-images 6] [--rounds 1]
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch import nn

import peers as peer_libs
from common import TimedModel, machine, parser, setup_threads, write_results
from pyadv.attacks import OnePixel
from pyadv.data import digits
from pyadv.models import pretrained


def main():
    ap = parser("OnePixel against torchattacks and ART (benchmarks/results/attacks_onepixel.json)")
    ap.add_argument("--images", type=int, default=16, help="8x8 digits test images")
    ap.add_argument("--rgb-images", type=int, default=6, help="digits-m test images (ResNet-32: ~10x the cost)")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    if args.quick:
        args.images, args.rgb_images = 4, 0
    setup_threads(args.threads)
    libs, missing = peer_libs.load()
    results = {}
    for model_name, n in (("digits8-cnn", args.images), ("digits-m-resnet32", args.rgb_images)):
        if n:
            print(f"== {model_name}, {n} images", flush=True)
            results[model_name] = compare(model_name, n, libs, args.rounds)
    payload = {"machine": machine(args.threads), "rounds": args.rounds,
               "budget": {"pixels": 1, "population": 400, "generations": 100, "stop": "first misclassification"},
               "peers_missing": missing, "results": results}
    print(f"wrote {write_results('attacks_onepixel', payload, args.out)}")


def compare(model_name: str, n_images: int, libs: dict, rounds: int) -> dict:
    from pyadv.data import digits_m

    model = pretrained(model_name, progress=False)
    x, y = digits("test", 8) if model_name == "digits8-cnn" else digits_m("test")
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok][:n_images].contiguous(), y[ok][:n_images]
    C, H, W = x.shape[1:]
    # pyadv counts its own forwards and model time (its runner's search copy would bypass a wrapper)
    pyadv_result = {}

    def run_pyadv(m):
        r = OnePixel(model, pop_size=400, iters=100, stop="first_success")(x, y)
        pyadv_result["r"] = r
        return r.adv

    OnePixel(model, pop_size=400, iters=2)(x[:2], y[:2])  # warm-up: the runner's plan, once per process
    impl = {"pyadv": run_pyadv}
    if "torchattacks" in libs:
        ta = libs["torchattacks"]
        impl["torchattacks"] = lambda m: ta.OnePixel(m, pixels=1, steps=100, popsize=400, inf_batch=400)(x, y)
    if "art" in libs:
        art = libs["art"]

        def run_art(m):
            clf = art.PyTorchClassifier(model=m, loss=nn.CrossEntropyLoss(), input_shape=(C, H, W), nb_classes=10,
                                        clip_values=(0.0, 1.0), device_type="cpu")
            atk = art.evasion.PixelAttack(clf, th=1, es=1, max_iter=100, verbose=False)
            return torch.from_numpy(atk.generate(x.numpy(), y=np.eye(10)[y.numpy()]))
        impl["art"] = run_art
    times = {k: [] for k in impl}
    rows = {}
    for r in range(rounds):
        for name in (list(impl) if r % 2 == 0 else list(impl)[::-1]):
            m = TimedModel(model).eval()
            t0 = time.perf_counter()
            adv = impl[name](m)
            t = time.perf_counter() - t0
            times[name].append(t)
            with torch.no_grad():
                fooled = model(adv.float()).argmax(1) != y
            changed = (adv.float() != x).any(1).flatten(1).sum(1)
            if name == "pyadv":
                res = pyadv_result["r"]
                images, model_s = int(res.queries.sum()), res.profile["model_s"]
            else:
                images, model_s = m.images, m.seconds
            rows[name] = {"success": float(fooled.float().mean()), "successes": int(fooled.sum()),
                          "max_pixels_changed": int(changed.max()), "forward_images": images,
                          "queries_per_success": images / max(int(fooled.sum()), 1),
                          "outside_forward_share": 1 - model_s / t}
            print(f"  {name:13s} {t:8.1f} s  {len(x) / t:8.3f} img/s  success {rows[name]['successes']}/{len(x)}  "
                  f"forwards {rows[name]['forward_images']}  outside forwards "
                  f"{rows[name]['outside_forward_share']:.1%}", flush=True)
    out = {"images": len(x)}
    for name in impl:
        med = statistics.median(times[name])
        e = {**rows[name], "time_s": med, "images_per_s": len(x) / med}
        if name != "pyadv":
            e["time_ratio_to_pyadv"] = statistics.median(t / p for t, p in zip(times[name], times["pyadv"]))
        out[name] = e
    return out


if __name__ == "__main__":
    main()
