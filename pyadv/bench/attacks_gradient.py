"""The gradient family against torchattacks, adv-lib and ART on the digits CNN
(benchmarks/results/attacks_gradient.json).

Every implementation attacks the same images with the same model at the same budget (steps,
step size, restarts); they alternate within each round, so a noisy machine slows them alike,
and the figure quoted is the median over rounds of time(peer) / time(pyadv). A peer's time
includes one forward of the images it returns (its user needs it to know what succeeded;
pyadv's result carries that check). Success is judged once for all, by the model as given on
the returned images. Each implementation runs once untimed on 64 images first (oneDNN's
primitives; pyadv's plan, measured once per process). Peers get the model wrapped in a
counter of forward images that need a gradient (their gradients per image); pyadv counts its
own.

    python benchmarks/attacks_gradient.py [--images 256] [--rounds 2] [--device cpu] [--quick]
"""
from __future__ import annotations

import math
import statistics

import numpy as np
import torch
from torch import nn

from pyadv.attacks import APGD, BIM, FGS, PGD, HotCold
from pyadv.bench import peers as peer_libs
from pyadv.bench.harness import alternating, machine, median_ratio, parser, script
from pyadv.data import digits
from pyadv.models import pretrained

FAMILY, SUITE, PEERS = "attacks_gradient", "attacks", ("torchattacks", "adv-lib", "art")


class Counted(nn.Module):
    """The model, counting the images of forwards whose input needs a gradient."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.grad_images = 0

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad_images += len(x)
        return self.model(x)


def art_classifier(lib, model, device, shape=(1, 28, 28)):
    return lib.PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=shape, nb_classes=10,
                                 clip_values=(0.0, 1.0), device_type="gpu" if device.type == "cuda" else "cpu")


def art_generate(attack, x, **kw):
    """ART works on NumPy arrays on the host, whatever the device its classifier runs on."""
    return torch.from_numpy(attack.generate(x.cpu().numpy(), **kw)).to(x.device)


def cases(args, libs, eps_list):
    """[(case, budget, {implementation: fn(x, y) -> (adv, pyadv result or None)})]."""
    out = []
    N = args.images
    dev = torch.device(args.device)
    ta, al, art = libs.get("torchattacks"), libs.get("adv-lib"), libs.get("art")

    def py(attack):
        def go(model, x, y):
            r = attack(model)(x, y)
            return r.adv, r
        return go

    # FGSM (every lambda binds its figures as defaults: the loops below rebind the names)
    e = 0.1
    impl = {"pyadv": py(lambda m, e=e: FGS(m, eps=e))}
    if ta:
        impl["torchattacks"] = lambda m, x, y, e=e: (ta.FGSM(m, eps=e)(x, y), None)
    if art:
        impl["art"] = lambda m, x, y, e=e: (art_generate(art.evasion.FastGradientMethod(
            art_classifier(art, m, dev), eps=e, batch_size=N), x), None)
    out.append(("fgsm", {"eps": e}, impl))
    # BIM, Kurakin et al.'s steps
    steps = BIM(nn.Identity(), eps=e).options.n_steps()
    alpha = 1 / 255
    impl = {"pyadv": py(lambda m, e=e: BIM(m, eps=e, alpha=alpha, steps=steps))}
    if ta:
        impl["torchattacks"] = lambda m, x, y, e=e: (ta.BIM(m, eps=e, alpha=alpha, steps=steps)(x, y), None)
    if art:
        impl["art"] = lambda m, x, y, e=e: (art_generate(art.evasion.BasicIterativeMethod(
            art_classifier(art, m, dev), eps=e, eps_step=alpha, max_iter=steps, batch_size=N,
            verbose=False), x), None)
    out.append(("bim", {"eps": e, "alpha": alpha, "steps": steps}, impl))
    for e in eps_list:
        # PGD-40, random start, Madry et al.'s step rule for every implementation
        a = 2.5 * e / 40
        impl = {"pyadv": py(lambda m, e=e, a=a: PGD(m, eps=e, alpha=a, steps=40)),
                "pyadv_first_success": py(lambda m, e=e, a=a: PGD(m, eps=e, alpha=a, steps=40, stop="first_success"))}
        if ta:
            impl["torchattacks"] = lambda m, x, y, e=e, a=a: (ta.PGD(m, eps=e, alpha=a, steps=40)(x, y), None)
        if al:
            impl["adv-lib"] = lambda m, x, y, e=e, a=a: (al.pgd_linf(m, x, y, ε=e, steps=40, absolute_step_size=a),
                                                         None)
        if art:
            impl["art"] = lambda m, x, y, e=e, a=a: (art_generate(art.evasion.ProjectedGradientDescent(
                art_classifier(art, m, dev), norm=np.inf, eps=e, eps_step=a, max_iter=40, num_random_init=1,
                batch_size=N, verbose=False), x), None)
        out.append((f"pgd40_eps{e:g}", {"eps": e, "alpha": a, "steps": 40}, impl))
        # APGD-100, cross-entropy, one restart
        impl = {"pyadv": py(lambda m, e=e: APGD(m, eps=e, steps=100)),
                "pyadv_first_success": py(lambda m, e=e: APGD(m, eps=e, steps=100, stop="first_success"))}
        if ta:
            impl["torchattacks"] = lambda m, x, y, e=e: (ta.APGD(m, eps=e, steps=100, loss="ce")(x, y), None)
        if al:
            impl["adv-lib"] = lambda m, x, y, e=e: (al.apgd(m, x, y, eps=e, norm=float("inf"), n_iter=100,
                                                            loss_function="ce"), None)
        if art:
            impl["art"] = lambda m, x, y, e=e: (art_generate(art.evasion.AutoProjectedGradientDescent(
                art_classifier(art, m, dev), norm=np.inf, eps=e, eps_step=2 * e, max_iter=100, nb_random_init=1,
                batch_size=N, loss_type="cross_entropy", verbose=False), x), None)
        out.append((f"apgd100_eps{e:g}", {"eps": e, "steps": 100, "loss": "ce"}, impl))
    # Hot/cold HC-1..9 (no peer has it): the search alone, and with PASS of every result
    out.append(("hotcold_hc1-9", {"classes": 9, "quantize": True}, {
        "pyadv": py(lambda m: HotCold(m, classes=9, quantize=True, pass_scores=False, select="l2")),
        "pyadv_with_pass": py(lambda m: HotCold(m, classes=9, quantize=True))}))
    return out


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2, help="rounds; implementations alternate within each")
    ap.add_argument("--eps", type=float, nargs="*", default=[0.1, 0.2, 0.3])
    ap.add_argument("--only", nargs="*", default=None, help="case names (prefixes) to run")
    return ap


def digits_setup(args):
    """The pretrained digits CNN, frozen, and the first ``args.images`` test digits, on the
    benchmark's device, with the clean accuracy."""
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = pretrained("digits-cnn", progress=False).eval().to(dev)
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = digits("test", 28)
    x, y = x[:args.images].contiguous().to(dev), y[:args.images].to(dev)
    with torch.no_grad():
        clean_acc = float((model(x).argmax(1) == y).float().mean())
    return model, x, y, clean_acc


def _on_common_successes(last: dict, name: str, ref: str) -> dict:
    """Mean L2 and L0 of ``name`` and ``ref`` on the images both fool (a mean over different
    images says little); empty where they share none. ``last``: name -> (fooled, L2, L0)."""
    both = last[name][0] & last[ref][0]
    if not both.any():
        return {}
    return {"images": int(both.sum()),
            "mean_l2": float(last[name][1][both].mean()), f"{ref}_mean_l2": float(last[ref][1][both].mean()),
            "mean_l0": float(last[name][2][both].mean()), f"{ref}_mean_l0": float(last[ref][2][both].mean())}


def compare(model, x, y, case_list, rounds: int, dev, only=None) -> dict:
    """Runs every case's implementations on the same images in alternating rounds and judges
    them all alike with the model. A case is (name, budget, {implementation: fn(model, x, y) ->
    (adv, pyadv result or None)}) or the same with a target [B] (success: pred == target, else
    pred != y). Peers get the model wrapped in a counter of the images of forwards that need a
    gradient."""
    results = {}
    for case, budget, impl, *rest in case_list:
        target = rest[0] if rest else None
        if only and not any(case.startswith(o) for o in only):
            continue
        print(f"== {case} {budget}", flush=True)
        w = min(len(x), 64)
        for name, fn in impl.items():  # warm-up: oneDNN primitives, pyadv's measured plan (once per process)
            fn(model if name.startswith("pyadv") else Counted(model).eval(), x[:w], y[:w])
        rows = {}

        def call(name, r):
            # eval mode: torchattacks gives a model back in the mode it found it, and a
            # wrapper in training mode would leave the shared model's batch norm training
            counted = Counted(model).eval()
            adv, res = impl[name](model if name.startswith("pyadv") else counted, x, y)
            if res is None:  # the peer's user needs this forward to know what succeeded
                with torch.no_grad():
                    pred = model(adv.float()).argmax(1)
            else:
                pred = res.pred
            rows.setdefault(name, []).append((adv, pred, res, counted.grad_images))

        times = alternating(list(impl), rounds, call, dev)
        entry = {"budget": budget}
        last = {}  # each implementation's last round: success and norms per image
        for name in impl:
            judged = []
            for adv, pred, res, grad_images in rows[name]:
                assert not any(mod.training for mod in model.modules()), f"{name} left the model in training mode"
                with torch.no_grad():
                    now = model(adv.float()).argmax(1)
                fooled = now == target if target is not None else now != y
                assert torch.equal(now, pred), name
                d = (adv.detach().float() - x).flatten(1)  # a peer may hand back a tensor that requires grad
                last[name] = (fooled, d.norm(dim=1), (d != 0).sum(1).float())
                row = {"success": float(fooled.float().mean()),
                       "accuracy_under_attack": float((now == y).float().mean()),
                       "linf_max": float(d.abs().amax()),
                       "mean_l2_of_successes": float(d.norm(dim=1)[fooled].mean()) if fooled.any() else math.nan,
                       "mean_l0_of_successes": float((d != 0).sum(1)[fooled].float().mean())
                       if fooled.any() else math.nan}
                if res is not None:
                    row["gradients_per_image"] = float(res.gradients.float().mean())
                    row["queries_per_image"] = float(res.queries.float().mean())
                    row["outside_model_share"] = 1 - res.profile["model_s"] / res.profile["total_s"]
                    if "dir_adversarial" in res.extras:
                        row["adversarials_per_image"] = float(res.extras["dir_success"].float().sum(1).mean())
                else:
                    row["gradients_per_image"] = grad_images / len(x)
                judged.append(row)
            med = statistics.median(times[name])
            e = {**judged[-1], "time_s": med, "images_per_s": len(x) / med}
            if name != "pyadv":
                e["time_ratio_to_pyadv"] = median_ratio(times, name)
                common = _on_common_successes(last, name, "pyadv")
                if common:
                    e["on_common_successes"] = common
            configs = [c for c in impl if c.startswith("pyadv") and c != "pyadv"]
            if not name.startswith("pyadv") and configs:
                # a peer against each of pyadv's other configurations, as against plain pyadv
                e["by_pyadv_config"] = {c: {"time_ratio": median_ratio(times, name, c),
                                            "on_common_successes": _on_common_successes(last, name, c)}
                                        for c in configs}
            if "outside_model_share" in e:
                e["outside_model_share"] = statistics.median(rw["outside_model_share"] for rw in judged)
            entry[name] = e
            print(f"  {name:22s} {e['images_per_s']:8.1f} img/s  success {e['success']:.3f}  "
                  f"L2 {e['mean_l2_of_successes']:.3f}  L0 {e['mean_l0_of_successes']:.0f}  "
                  f"grads/img {e.get('gradients_per_image', math.nan):6.1f}"
                  + (f"  x{e['time_ratio_to_pyadv']:.2f} pyadv's time" if name != "pyadv" else "")
                  + (f"  outside model {e['outside_model_share']:.1%}" if "outside_model_share" in e else ""),
                  flush=True)
            for c, v in e.get("by_pyadv_config", {}).items():
                common = v["on_common_successes"]
                print(f"  {'':22s} x{v['time_ratio']:.2f} {c}'s time"
                      + (f"  L2 on common successes {common['mean_l2']:.3f} / {c} {common[c + '_mean_l2']:.3f}"
                         if common else ""), flush=True)
        results[case] = entry
    return results


def run(args) -> dict:
    if args.quick:
        args.images, args.rounds, args.eps = 32, 1, [0.1]
    dev = torch.device(args.device)
    model, x, y, clean_acc = digits_setup(args)
    libs, missing = peer_libs.load()
    for name, why in missing.items():
        print(f"peer {name} not benchmarked: {why}")
    results = compare(model, x, y, cases(args, libs, args.eps), args.rounds, dev, args.only)
    return {"machine": machine(args.threads, dev), "images": len(x), "clean_accuracy": clean_acc,
            "rounds": args.rounds, "peers": {k: getattr(v, "__version__", getattr(v, "version", "?"))
                                             for k, v in libs.items()},
            "peers_missing": missing, "cases": results}


def summary(payload) -> list[dict]:
    rows = []
    for case, entry in payload["cases"].items():
        ours = entry["pyadv"]
        vs = {k: v["time_ratio_to_pyadv"] for k, v in entry.items()
              if k not in ("budget", "pyadv") and not k.startswith("pyadv")}
        rows.append({"case": case, "rate": ours["images_per_s"], "unit": "images/s", "vs": vs,
                     "success": ours["success"], "outside_model": ours.get("outside_model_share")})
    return rows


if __name__ == "__main__":
    import sys

    script(sys.modules[__name__])
