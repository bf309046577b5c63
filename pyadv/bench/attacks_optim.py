"""The optimisation attacks of paper 003 against their peers on the digits CNN
(benchmarks/results/attacks_optim.json): Carlini-Wagner L2 against torchattacks' CW (one c,
the same steps and learning rate; torchattacks has no search over c) and against adv-lib's
(the same binary search: steps, iterations, initial c), and JSMA against torchattacks' JSMA
(theta 1, Upsilon 0.1, each image sent to (y + 1) % 10, torchattacks' default target).
C&W also runs with ``precision="bf16"`` (``pyadv_bf16``; its ratio is to pyadv in float32).

Implementations alternate within each round and are judged alike by the model (success,
mean L2 and L0 of the successes); a peer's time includes the forward that tells its user
what succeeded. pyadv reports the share of its time outside the model's passes.

    python benchmarks/attacks_optim.py [--images 256] [--rounds 1] [--device cpu] [--quick]
"""
from __future__ import annotations

import math

import torch

from pyadv.attacks import CWL2, JSMA
from pyadv.bench import peers as peer_libs
from pyadv.bench.attacks_gradient import compare, digits_setup
from pyadv.bench.harness import machine, parser, script

FAMILY, SUITE, PEERS = "attacks_optim", "attacks", ("torchattacks", "adv-lib")


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=1, help="rounds; implementations alternate within each")
    ap.add_argument("--steps", type=int, default=100, help="C&W Adam steps per c")
    ap.add_argument("--search", type=int, default=5, help="C&W binary-search steps (the adv-lib case)")
    ap.add_argument("--only", nargs="*", default=None, help="case names (prefixes) to run")
    return ap


def cw_configs(py, **budget) -> dict:
    """pyadv's C&W L2 as a user would run it against a peer: float32 and bf16, each with the
    paper's per-image early abort (``pyadv``, ``pyadv_bf16``) and without it (``*_full``: every
    step of every c-step, as the peers' batch-wide abort nearly always does)."""
    return {"pyadv": py(lambda m: CWL2(m, **budget)),
            "pyadv_bf16": py(lambda m: CWL2(m, **budget, precision="bf16")),
            "pyadv_full": py(lambda m: CWL2(m, **budget, abort_early=False)),
            "pyadv_bf16_full": py(lambda m: CWL2(m, **budget, precision="bf16", abort_early=False))}


def cases(args, libs, y):
    ta, al = libs.get("torchattacks"), libs.get("adv-lib")

    def py(attack, target=None):
        def go(model, x, yy):
            r = attack(model)(x, yy, None if target is None else target[:len(x)])
            return r.adv, r
        return go

    steps = args.steps
    out = []
    impl = cw_configs(py, c=1.0, steps=steps, search_steps=1, lr=0.01)
    if ta:
        impl["torchattacks"] = lambda m, x, yy: (ta.CW(m, c=1.0, kappa=0, steps=steps, lr=0.01)(x, yy), None)
    out.append((f"cw_l2_c1_{steps}steps", {"c": 1.0, "steps": steps, "search_steps": 1, "lr": 0.01}, impl))
    s = args.search
    impl = cw_configs(py, c=0.01, steps=steps, search_steps=s, lr=0.01)
    if al:
        impl["adv-lib"] = lambda m, x, yy: (al.carlini_wagner_l2(m, x, yy, initial_const=0.01, binary_search_steps=s,
                                                                   max_iterations=steps, learning_rate=0.01), None)
    out.append((f"cw_l2_search{s}x{steps}", {"c": 0.01, "steps": steps, "search_steps": s, "lr": 0.01}, impl))
    t = (y + 1) % 10
    # the same number of pair steps: torchattacks runs ceil(gamma P / 2) of them (40 pairs, 80
    # features at P = 784, above gamma P = 78.4); pyadv's upsilon caps the features changed,
    # floor(upsilon P / 2) pairs, so it gets the upsilon that allows those 40 pairs
    P = 28 * 28
    pairs = math.ceil(0.1 * P / 2)
    upsilon = 2 * pairs / P
    impl = {"pyadv": py(lambda m: JSMA(m, theta=1.0, upsilon=upsilon), t)}
    if ta:
        impl["torchattacks"] = lambda m, x, yy: (ta.JSMA(m, theta=1.0, gamma=0.1)(x, yy), None)
    out.append(("jsma_theta1_ups0.1", {"theta": 1.0, "torchattacks_gamma": 0.1, "pair_steps": pairs,
                                       "pyadv_upsilon": upsilon, "target": "(y + 1) % 10"}, impl, t))
    return out


def run(args) -> dict:
    if args.quick:
        args.images, args.rounds, args.steps, args.search = 16, 1, 20, 2
    dev = torch.device(args.device)
    model, x, y, clean_acc = digits_setup(args)
    libs, missing = peer_libs.load()
    for name, why in missing.items():
        print(f"peer {name} not benchmarked: {why}")
    results = compare(model, x, y, cases(args, libs, y), args.rounds, dev, args.only)
    return {"machine": machine(args.threads, dev), "images": len(x), "clean_accuracy": clean_acc,
            "rounds": args.rounds, "peers_missing": missing, "cases": results,
            "goals": {"cw_l2_vs_torchattacks": ">= 2", "jsma_vs_torchattacks": ">= 5",
                      "each": "at equal or better success and norm"}}


def summary(payload) -> list[dict]:
    rows = []
    for case, entry in payload["cases"].items():
        ours = entry["pyadv"]
        vs = {k: v["time_ratio_to_pyadv"] for k, v in entry.items() if k != "budget" and not k.startswith("pyadv")}
        rows.append({"case": case, "rate": ours["images_per_s"], "unit": "images/s", "vs": vs,
                     "success": ours["success"], "outside_model": ours.get("outside_model_share")})
    return rows


if __name__ == "__main__":
    import sys

    script(sys.modules[__name__])
