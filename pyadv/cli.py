"""The `pyadv` command line: `pyadv info`, `pyadv demo`.

Exit codes: 0 success, 1 the job failed, 2 bad usage (argparse's convention).
"""
from __future__ import annotations

import argparse
import json
import sys


def _device(value: str) -> str:
    import torch

    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"device {value!r} asked for, but torch sees no CUDA device")
    try:
        torch.device(value)
    except RuntimeError as e:
        raise argparse.ArgumentTypeError(f"not a torch device: {value!r} ({e})") from None
    return value


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="pyadv", description="Fast adversarial image generation and training.")
    p.add_argument("--version", action="version", version=f"pyadv {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="what was compiled in and what is usable now")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    demo = sub.add_parser("demo", help="per-pixel FI maps of a few digits for every class (paper 000, Fig. 2)")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--seed", type=int, default=0, help="seed of --pick random (default: 0)")
    demo.add_argument("--device", type=_device, default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    demo.add_argument("--images", type=_positive_int, default=4, help="how many test images (default: 4)")
    demo.add_argument("--convention", choices=("sa_dnn", "exact"), default="sa_dnn",
                      help="FI guards: the authors' (sa_dnn, default) or eq. (1) as printed (exact)")
    demo.add_argument("--pick", choices=("vulnerable", "random"), default="vulnerable",
                      help="lowest-confidence correct test images (default) or random ones (--seed)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            from ._info import format_info, info

            d = info()
            print(json.dumps(d, indent=2) if args.json else format_info(d))
        elif args.command == "demo":
            from .demo import run_demo

            s = run_demo(args.out, n_images=args.images, seed=args.seed, device=args.device,
                         convention=args.convention, pick=args.pick, progress=not args.no_progress)
            print(f"wrote {args.out}/report.md and {len(s['images'])} figures "
                  f"(digits-cnn test accuracy {100 * s['test_accuracy']:.2f} %)")
    except (ValueError, TypeError, RuntimeError, OSError) as e:
        print(f"pyadv {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0
