"""SSIM and PASS against the libraries people use, in images per second, with the ratios.

- SSIM forward at A = 1024x1x28x28, B = 1024x3x32x32, C = 16x3x224x224 against scikit-image
  (one image at a time), pytorch-msssim, kornia (valid padding), piq and torchmetrics, plus the
  useful GFLOP/s of pyadv's kernel and its share of the issue's bound (see ``useful_flops``);
- SSIM forward + backward (gradients for both images) against pytorch-msssim and kornia;
- PASS on alignment pairs (pyadv.data.pairs) at 28, 32 and 224 px against a per-pair loop of
  OpenCV's findTransformECC + warpPerspective + scikit-image's SSIM, same iterations and eps.

Every comparison runs in its own fresh process (the peers' speed depends on heap state: their
temporaries are tens of MB of freshly mapped pages per call), timed in alternating rounds; the
allocator settings in force are recorded with the machine facts.

    python benchmarks/image.py [--threads 2] [--device cpu] [--quick] [--out FILE]

On CUDA, pyadv and the torch-based peers run on the device; scikit-image and OpenCV on the CPU.

Peers: pip install --no-deps kornia kornia-rs pytorch-msssim piq torchmetrics lightning-utilities
(piq's package imports torchvision for its feature extractors; its SSIM does not, and is loaded
without them when torchvision is absent).
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

from pyadv.bench.harness import interleaved, machine, parser, script, setup_threads
from pyadv.bench.peers import installed

FAMILY, SUITE = "image", "kernels"
PEERS = ("scikit-image", "opencv", "pytorch-msssim", "kornia", "piq", "torchmetrics")
SHAPES = {"A": (1024, 1, 28, 28), "B": (1024, 3, 32, 32), "C": (16, 3, 224, 224)}
PASS_SIZES = {28: 16, 32: 16, 224: 3}  # pairs per photo (4 photos)
#: The issue's bound: about 240 useful flops per pixel at 50 GFLOP/s (a third of this machine's
#: measured sgemm rate).
BOUND_FLOPS = 50e9


def useful_flops(shape, win=11) -> float:
    """Flops of one fused SSIM forward: per channel, the horizontal pass makes 5 filtered
    quantities at H x Wv positions and the vertical pass at Hv x Wv (2 flops per tap each), and
    about 20 flops of SSIM per valid pixel. At 11 x 11 this is the ~240 flops per pixel of the
    bound."""
    B, C, H, W = shape
    Hv, Wv = H - win + 1, W - win + 1
    return B * C * (10 * win * H * Wv + 10 * win * Hv * Wv + 20 * Hv * Wv)


@functools.lru_cache(maxsize=None)
def piq_ssim():
    try:
        import piq
        return piq.ssim
    except ImportError:
        spec = importlib.util.find_spec("piq")
        if spec is None:
            raise
        pkg = types.ModuleType("piq")  # the package without its __init__ (which needs torchvision)
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["piq"] = pkg
        from piq.ssim import ssim
        return ssim


def ssim_peers(x, y):
    peers = {}
    if installed("scikit-image"):
        from skimage.metrics import structural_similarity

        xn, yn = x.detach().cpu().numpy(), y.detach().cpu().numpy()
        peers["scikit_image"] = lambda: [structural_similarity(xn[i], yn[i], gaussian_weights=True, sigma=1.5,
                                                               use_sample_covariance=False, data_range=1.0,
                                                               channel_axis=0) for i in range(len(xn))]
    try:
        import pytorch_msssim
        peers["pytorch_msssim"] = lambda a=x, b=y: pytorch_msssim.ssim(a, b, data_range=1.0, size_average=False)
    except ImportError:
        pass
    try:
        import kornia
        peers["kornia"] = lambda a=x, b=y: kornia.metrics.ssim(a, b, 11, padding="valid").mean((1, 2, 3))
    except ImportError:
        pass
    try:
        f = piq_ssim()
        peers["piq"] = lambda a=x, b=y: f(a, b, data_range=1.0, reduction="none", downsample=False)
    except ImportError:
        pass
    try:
        from torchmetrics.functional.image import structural_similarity_index_measure as tm
        peers["torchmetrics"] = lambda a=x, b=y: tm(a, b, data_range=1.0, reduction="none", gaussian_kernel=True,
                                                    sigma=1.5, kernel_size=11)
    except ImportError:
        pass
    return peers


def as_numpy(v) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu()
    elif isinstance(v, list):
        v = [float(e) for e in v]
    return np.asarray(v, dtype=np.float64)


def case_ssim(name: str, rounds: int, device) -> dict:
    from pyadv.metrics import ssim

    shape = SHAPES[name]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g)
    y = (x + 0.05 * torch.randn(shape, generator=g)).clamp(0, 1)
    x, y = x.to(device), y.to(device)
    ours = ssim(x, y).detach().cpu()
    peers = ssim_peers(x, y)
    agree = {}
    for k, f in peers.items():
        v = torch.as_tensor(as_numpy(f())).flatten()
        agree[k] = float((v - ours.double()).abs().max())
    fwd = interleaved({"pyadv": lambda: ssim(x, y), **peers}, rounds=rounds, warmup=1, min_call_s=0.05,
                      device=device)
    t = fwd["pyadv"]["median_s"]
    lib = {k: v for k, v in fwd.items() if k not in ("pyadv", "scikit_image")}
    fastest = min(lib, key=lambda k: lib[k]["median_s"]) if lib else None
    gflops = useful_flops(shape) / t / 1e9
    out = {"shape": list(shape), "images_per_s": {k: shape[0] / v["median_s"] for k, v in fwd.items()},
           "speedup_vs": fwd["pyadv"]["ratios_to"], "max_abs_diff_vs_pyadv": agree,
           "pyadv_useful_gflops": gflops, "bound_images_per_s": shape[0] * BOUND_FLOPS / useful_flops(shape),
           "share_of_bound": gflops * 1e9 / BOUND_FLOPS, "fastest_library": fastest,
           "speedup_vs_fastest_library": fwd["pyadv"]["ratios_to"][fastest] if fastest else None}
    # Forward + backward, gradients for both images.
    xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    fb = {"pyadv": lambda: torch.autograd.grad(ssim(xg, yg).sum(), (xg, yg))}
    grad_peers = {k: f for k, f in ssim_peers(xg, yg).items() if k in ("pytorch_msssim", "kornia")}
    for k, f in grad_peers.items():
        fb[k] = lambda f=f: torch.autograd.grad(f().sum(), (xg, yg))
    fbt = interleaved(fb, rounds=rounds, warmup=1, min_call_s=0.05, device=device)
    lib = [k for k in fbt if k != "pyadv"]
    fastest_fb = min(lib, key=lambda k: fbt[k]["median_s"]) if lib else None
    out["forward_backward"] = {"images_per_s": {k: shape[0] / v["median_s"] for k, v in fbt.items()},
                               "speedup_vs": fbt["pyadv"]["ratios_to"], "fastest_library": fastest_fb,
                               "speedup_vs_fastest_library": fbt["pyadv"]["ratios_to"][fastest_fb]
                               if fastest_fb else None}
    return out


def case_pass(size: int, rounds: int, device) -> dict:
    from pyadv.data.pairs import warped_pairs
    from pyadv.metrics import pass_score

    P = warped_pairs(size, PASS_SIZES[size], seed=size)
    t, x = P.template.to(device), P.image.to(device)  # float32, as OpenCV gets them
    n = len(P.template)
    if not (installed("opencv") and installed("scikit-image")):
        r = interleaved({"pyadv": lambda: pass_score(x, t)}, rounds=rounds, warmup=1, min_call_s=0.05, device=device)
        return {"size": size, "pairs": n, "pairs_per_s": {"pyadv": n / r["pyadv"]["median_s"]}}
    import cv2
    from skimage.metrics import structural_similarity

    tn, xn = P.template[:, 0].numpy(), P.image[:, 0].numpy()
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-3)
    raised = [0]

    def opencv():
        out = []
        for a, b in zip(tn, xn):
            try:
                _, W = cv2.findTransformECC(a, b, np.eye(3, dtype=np.float32), cv2.MOTION_HOMOGRAPHY, crit, None, 5)
            except cv2.error:
                raised[0] += 1
                W = np.eye(3, dtype=np.float32)
            al = cv2.warpPerspective(b, W, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            out.append(structural_similarity(al.astype(np.float64), a.astype(np.float64), gaussian_weights=True,
                                             sigma=1.5, use_sample_covariance=False, data_range=1.0))
        return out

    ours = pass_score(x, t).cpu().numpy()
    theirs = np.array(opencv())
    r = interleaved({"pyadv": lambda: pass_score(x, t), "opencv_loop": opencv}, rounds=rounds, warmup=1,
                    min_call_s=0.05, device=device)
    return {"size": size, "pairs": n, "pairs_per_s": {k: n / v["median_s"] for k, v in r.items()},
            "speedup_vs_opencv_loop": r["pyadv"]["ratios_to"]["opencv_loop"],
            "mean_abs_diff_vs_opencv_loop": float(np.mean(np.abs(ours - theirs)))}


def allocator_facts() -> dict:
    facts = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))}
    for name in ("enabled", "defrag"):
        p = Path(f"/sys/kernel/mm/transparent_hugepage/{name}")
        if p.exists():
            facts[f"thp_{name}"] = p.read_text().strip()
    facts["libc"] = " ".join(__import__("platform").libc_ver())
    return facts


def build_parser():
    p = parser(__doc__)
    p.add_argument("--case", help=argparse.SUPPRESS, default=None)  # internal: one comparison
    return p


def run(args) -> dict:
    results = {}
    for case in list(SHAPES) + [str(s) for s in PASS_SIZES]:
        cmd = [sys.executable, "-m", "pyadv.bench.image", "--case", case, "--threads", str(args.threads),
               "--repeat", str(args.repeat), "--device", str(args.device)]
        if args.quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"case {case} failed (exit {proc.returncode})")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results[case] = res
        if case in SHAPES:
            fb = res["forward_backward"]
            print(f"SSIM {case} {tuple(res['shape'])}: pyadv {res['images_per_s']['pyadv']:,.0f} images/s, "
                  + (f"{res['speedup_vs_fastest_library']:.1f}x the fastest library ({res['fastest_library']}), "
                     if res["fastest_library"] else "no torch-based library peer installed, ")
                  + f"{res['pyadv_useful_gflops']:.1f} useful GFLOP/s = {res['share_of_bound']:.2f} of the bound"
                  + (f"; forward+backward {fb['speedup_vs_fastest_library']:.1f}x ({fb['fastest_library']})"
                     if fb["fastest_library"] else ""))
        else:
            print(f"PASS {case} px, {res['pairs']} pairs: pyadv {res['pairs_per_s']['pyadv']:,.0f} pairs/s"
                  + (f", {res['speedup_vs_opencv_loop']:.1f}x the OpenCV + scikit-image loop"
                     if "speedup_vs_opencv_loop" in res else " (OpenCV or scikit-image not installed)"))
    return {"family": "image", "machine": {**machine(args.threads, args.device), "allocator": allocator_facts()},
            "goals": {"ssim_forward_vs_fastest_library": ">= 5 on every shape",
                      "ssim_forward_share_of_bound": ">= 0.5",
                      "ssim_forward_backward_vs_fastest_library": ">= 3",
                      "pass_vs_opencv_loop": ">= 10 at 28 and 32 px, >= 3 at 224 px"},
            "ssim": {k: results[k] for k in SHAPES}, "pass": {k: results[k] for k in map(str, PASS_SIZES)}}


def summary(payload) -> list[dict]:
    rows = []
    for r in payload["ssim"].values():
        shape = "x".join(map(str, r["shape"]))
        rows.append({"case": f"ssim {shape}", "rate": r["images_per_s"]["pyadv"], "unit": "images/s",
                     "vs": r["speedup_vs"]})
        fb = r["forward_backward"]
        rows.append({"case": f"ssim fwd+bwd {shape}", "rate": fb["images_per_s"]["pyadv"], "unit": "images/s",
                     "vs": fb["speedup_vs"]})
    for r in payload["pass"].values():
        vs = {"opencv_loop": r["speedup_vs_opencv_loop"]} if "speedup_vs_opencv_loop" in r else {}
        rows.append({"case": f"pass {r['size']} px", "rate": r["pairs_per_s"]["pyadv"], "unit": "pairs/s", "vs": vs})
    return rows


def one_case(argv=None) -> None:
    args = build_parser().parse_args(argv)
    setup_threads(args.threads)
    rounds = 3 if args.quick else max(3, args.repeat // 3)
    dev = torch.device(args.device)
    res = case_ssim(args.case, rounds, dev) if args.case in SHAPES else case_pass(int(args.case), rounds, dev)
    print(json.dumps(res))


if __name__ == "__main__":
    if "--case" in sys.argv:  # one comparison, in this fresh process; JSON on stdout
        one_case()
    else:
        script(sys.modules[__name__])
