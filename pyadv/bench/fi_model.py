"""Per-pixel FI on models: pyadv.fi.pixel_fi against the ways one would compute it with
plain PyTorch, in images per second, side by side in one process.

  digits CNN (pretrained "digits-cnn", 1x28x28, K = 10) at B = 256
  ResNet-32 (3x32x32, K = 10, random weights: speed does not depend on them) at B = 64
  a K = 100 classifier: fisher="topk" / "sampled" against "exact", time and error

Baselines compute J with autograd, then the FI reduction with composed torch ops:
  naive_per_image      one image at a time, K backward passes each
  per_class_full       one backward per class over the whole batch
  per_class_sub{16,32,64}  the same in sub-batches
  is_grads_batched     autograd.grad(..., is_grads_batched=True)
  vmap_jacrev          torch.func.vmap(torch.func.jacrev(.))
  channels_last        per_class_sub32 with channels-last tensors
pyadv runs K - 1 backward passes (the most probable class's gradient follows from the others).
"model_only_pyadv" is the same forward and K - 1 backward passes per sub-batch, nothing else:
pyadv's time minus it is the Jacobian plumbing plus the FI reduction. "model_only_K" is the
K-pass floor of every baseline.

    python benchmarks/fi_model.py [--threads 2] [--device cpu] [--quick]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pyadv import fi
from pyadv._model_mode import frozen_eval
from pyadv.bench.harness import interleaved, machine, parser, script, timeit
from pyadv.data import digits
from pyadv.models import ResNet32, TwoConvBN, pretrained

FAMILY, SUITE, PEERS = "fi_model", "kernels", ()


def reduce_fi(jac, probs, t):
    den = (jac**2 * probs[..., None]).sum(1)
    jt = jac.gather(1, t.view(-1, 1, 1).expand(-1, 1, jac.shape[2])).squeeze(1)
    return torch.where(den > 0, jt**2 / den, torch.zeros_like(den))


def per_class(model, x, t, sub, channels_last=False):
    out = []
    for i in range(0, len(x), sub):
        xs = x[i:i + sub].clone()
        if channels_last:
            xs = xs.contiguous(memory_format=torch.channels_last)
        xs.requires_grad_(True)
        logp = F.log_softmax(model(xs), 1)
        K = logp.shape[1]
        jac = torch.stack([torch.autograd.grad(logp[:, k].sum(), xs, retain_graph=k < K - 1)[0].reshape(len(xs), -1)
                           for k in range(K)], 1)
        out.append(reduce_fi(jac, logp.detach().exp(), t[i:i + sub]))
    return torch.cat(out)


def naive(model, x, t):
    out = []
    for i in range(len(x)):
        xs = x[i:i + 1].clone().requires_grad_(True)
        logp = F.log_softmax(model(xs), 1)[0]
        K = logp.shape[0]
        jac = torch.stack([torch.autograd.grad(logp[k], xs, retain_graph=k < K - 1)[0].flatten() for k in range(K)])
        out.append(reduce_fi(jac[None], logp.detach().exp()[None], t[i:i + 1]))
    return torch.cat(out)


def grads_batched(model, x, t, sub=64):
    out = []
    for i in range(0, len(x), sub):
        xs = x[i:i + sub].clone().requires_grad_(True)
        logp = F.log_softmax(model(xs), 1)
        K = logp.shape[1]
        go = torch.eye(K, device=x.device)[:, None, :].expand(K, len(xs), K)
        (g,) = torch.autograd.grad(logp, xs, grad_outputs=go, is_grads_batched=True)
        out.append(reduce_fi(g.reshape(K, len(xs), -1).transpose(0, 1), logp.detach().exp(), t[i:i + sub]))
    return torch.cat(out)


def vmap_jacrev(model, x, t, sub=64):
    f = lambda xi: F.log_softmax(model(xi[None]), 1)[0]
    out = []
    for i in range(0, len(x), sub):
        xs = x[i:i + sub]
        jac = torch.func.vmap(torch.func.jacrev(f))(xs).reshape(len(xs), -1, xs[0].numel())
        with torch.no_grad():
            probs = torch.softmax(model(xs), 1)
        out.append(reduce_fi(jac, probs, t[i:i + sub]))
    return torch.cat(out)


def model_only(model, x, sub, passes, channels_last=False):
    """The forward pass and `passes` backward passes per sub-batch, nothing else."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for i in range(0, len(x), sub):
        xs = x[i:i + sub].clone(memory_format=fmt).requires_grad_(True)
        logp = F.log_softmax(model(xs), 1)
        for k in range(passes):
            torch.autograd.grad(logp[:, k].sum(), xs, retain_graph=k < passes - 1)


def timed(fn, repeat, device):
    """Median seconds of ``repeat`` calls after one warm-up."""
    return timeit(fn, warmup=1, repeat=repeat, min_seconds=0, device=device)["median_s"]


def agree(got, ref):
    """The same FI up to float32 rounding. Pixels whose gradients all but vanish are ratios of
    rounding errors in every method (float32 against float64: up to 700x off on 0.1 % of the
    digits CNN's pixels, for pyadv and the baselines alike), so the median is compared."""
    mask = ref > 1e-4 * ref.amax(1, keepdim=True)
    rel = ((got - ref).abs() / ref)[mask]
    assert float(rel.median()) < 1e-2, float(rel.median())


def run_model(name, model, x, y, rounds, slow=("naive_per_image", "vmap_jacrev")):
    t = y
    K = 10
    plan = fi.make_plan(model, x, K - 1)
    contenders = {
        "pyadv": lambda: fi.pixel_fi(model, x, y),
        "naive_per_image": lambda: naive(model, x, t),
        "per_class_full": lambda: per_class(model, x, t, len(x)),
        "per_class_sub16": lambda: per_class(model, x, t, 16),
        "per_class_sub32": lambda: per_class(model, x, t, 32),
        "per_class_sub64": lambda: per_class(model, x, t, 64),
        "is_grads_batched": lambda: grads_batched(model, x, t),
        "vmap_jacrev": lambda: vmap_jacrev(model, x, t),
        "channels_last": lambda: per_class(model, x, t, 32, channels_last=True),
        "model_only_K": lambda: model_only(model, x, plan.sub_batch, K, plan.channels_last),
        "model_only_pyadv": lambda: model_only(model, x, plan.sub_batch, K - 1, plan.channels_last),
    }
    with frozen_eval(model):
        ref = fi.pixel_fi(model, x, y).flatten(1)
        for key, fn in contenders.items():
            if key != "pyadv" and not key.startswith("model_only"):
                agree(fn().flatten(1), ref)
        # Slow baselines once each; the rest in alternating rounds, so machine noise hits all alike.
        res = {k: {"seconds": timed(contenders[k], 1, x.device)} for k in slow}
        fast = {k: v for k, v in contenders.items() if k not in slow}
        for k, v in interleaved(fast, rounds=rounds, warmup=1, min_call_s=0, device=x.device).items():
            res[k] = {"seconds": v["median_s"]}
    for k, v in res.items():
        v["images_per_s"] = len(x) / v["seconds"]
        print(f"  {name:10s} {k:18s} {v['images_per_s']:8.1f} images/s")
    base = {k: v for k, v in res.items() if k != "pyadv" and not k.startswith("model_only")}
    best = max(base, key=lambda k: base[k]["images_per_s"])
    out = {
        "batch": len(x), "input": list(x.shape[1:]), "classes": K, "sub_batch_auto": plan.sub_batch,
        "channels_last_auto": plan.channels_last,
        "backward_passes": {"pyadv": K - 1, "baselines": K},
        "results": res,
        "pyadv_ratio_to": {k: res["pyadv"]["images_per_s"] / v["images_per_s"] for k, v in base.items()},
        "best_baseline": best,
        "outside_model_passes_fraction": 1 - res["model_only_pyadv"]["seconds"] / res["pyadv"]["seconds"],
    }
    print(f"  {name}: pyadv / best baseline ({best}) = {out['pyadv_ratio_to'][best]:.2f}; time outside the "
          f"model's own passes {100 * out['outside_model_passes_fraction']:.1f} %")
    return out


def run_many_classes(repeat, batch, device):
    """A K = 100 classifier trained briefly on the digits (classes 10-99 never occur), so its
    probabilities concentrate on a few classes as a trained model's do."""
    torch.manual_seed(0)
    model = TwoConvBN(num_classes=100)
    xtr, ytr = digits("train", 28)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(3):
        for i in range(0, len(xtr), 64):
            loss = F.cross_entropy(model(xtr[i:i + 64]), ytr[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval().to(device)
    x, y = digits("test", 28)
    x, y = x[:batch].to(device), y[:batch].to(device)
    exact = fi.pixel_fi(model, x, y)
    exact_s = timed(lambda: fi.pixel_fi(model, x, y), repeat, device)
    mask = exact > 1e-3 * exact.amax(dim=(1, 2, 3), keepdim=True)
    rows = {"exact": {"seconds": exact_s, "backward_passes": 100}}
    for label, kw, passes in [("topk5", dict(fisher="topk", k=5), 6), ("topk10", dict(fisher="topk", k=10), 11),
                              ("topk20", dict(fisher="topk", k=20), 21), ("sampled10", dict(fisher="sampled", samples=10), 11),
                              ("sampled20", dict(fisher="sampled", samples=20), 21)]:
        approx, info = fi.pixel_fi(model, x, y, return_info=True, **kw)
        rel = ((approx - exact).abs() / exact)[mask]
        rows[label] = {"seconds": timed(lambda: fi.pixel_fi(model, x, y, **kw), repeat, device),
                       "backward_passes": passes,
                       "median_rel_error": float(rel.median()), "p90_rel_error": float(rel.quantile(0.9))}
        if "left_out_mass" in info:
            rows[label]["median_left_out_mass"] = float(info["left_out_mass"].median())
        rows[label]["speedup_vs_exact"] = exact_s / rows[label]["seconds"]
        print(f"  K=100 {label:10s} {rows[label]['seconds'] * 1e3:8.1f} ms ({rows[label]['speedup_vs_exact']:.1f}x exact), "
              f"median rel. error {rows[label]['median_rel_error']:.3g}")
    return {"batch": batch, "classes": 100, "results": rows}


def build_parser():
    return parser(__doc__)


def run(args) -> dict:
    dev = torch.device(args.device)
    repeat = 2 if args.quick else 5
    # --quick: a quarter of the batches (the per-image and vmap baselines dominate the time)
    b_digits, b_resnet = (64, 16) if args.quick else (256, 64)
    payload = {"family": "fi_model", "machine": machine(args.threads, dev)}
    model = pretrained("digits-cnn", progress=False).to(dev)
    x, y = digits("test", 28)
    x = torch.cat([x, x])[:b_digits].to(dev)
    y = torch.cat([y, y])[:b_digits].to(dev)
    print(f"digits CNN, B={b_digits}")
    payload["digits_cnn"] = run_model("digits", model, x, y, repeat)
    print(f"ResNet-32, 3x32x32, B={b_resnet}")
    torch.manual_seed(0)
    rn = ResNet32(in_channels=3).eval().to(dev)
    xr = torch.rand(b_resnet, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(dev)
    yr = torch.softmax(rn(xr), 1).argmax(1).detach()
    payload["resnet32"] = run_model("resnet32", rn, xr, yr, 2 if args.quick else 3)
    print(f"K = 100, B={b_resnet}")
    payload["many_classes"] = run_many_classes(repeat, b_resnet, dev)
    return payload


def summary(payload) -> list[dict]:
    rows = []
    for key, label in (("digits_cnn", "digits CNN"), ("resnet32", "ResNet-32")):
        r = payload[key]
        vs = {k: v for k, v in r["pyadv_ratio_to"].items() if k in (r["best_baseline"], "naive_per_image")}
        rows.append({"case": f"pixel_fi {label} B={r['batch']}", "rate": r["results"]["pyadv"]["images_per_s"],
                     "unit": "images/s", "vs": vs})
    mc = payload["many_classes"]["results"]
    rows.append({"case": "pixel_fi K=100 topk10", "rate": payload["many_classes"]["batch"] / mc["topk10"]["seconds"],
                 "unit": "images/s", "vs": {"exact": mc["topk10"]["speedup_vs_exact"]}})
    return rows


if __name__ == "__main__":
    import sys

    script(sys.modules[__name__])
