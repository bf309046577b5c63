"""The `pyadv` command line: `pyadv info`, `pyadv demo`, `pyadv generate`, `pyadv export`,
`pyadv bench`.

Exit codes: 0 success, 1 the job failed, 2 bad usage (argparse's convention; also an unknown
attack or option, a model or data set that cannot be used).
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

    gen = sub.add_parser("generate", help="generate an adversarial dataset (shards + manifest; rerun to resume)",
                         description="Attacks every input image with each attack and writes safetensors shards, a "
                                     "JSON-lines manifest and a dataset card to --out. Rerunning the same command "
                                     "resumes; under torchrun the shards are split across ranks.")
    gen.add_argument("--attack", help="attack registry name (see --list-attacks)")
    gen.add_argument("--option", "-o", action="append", default=[], metavar="NAME=VALUE",
                     help="an attack option (VALUE parsed as JSON where it parses: 20, 0.5, true, [1.05, 1.1])")
    gen.add_argument("--config", help="YAML or JSON file: attacks: [{attack, options, name}], and any of model, "
                                      "weights, data, seed, batch_size, limit, classes")
    gen.add_argument("--model", default=None, help="built-in model (digits-cnn) or package.module:factory "
                                                   "(default: digits-cnn)")
    gen.add_argument("--weights", default=None, help="safetensors state dict for a package.module:factory model")
    gen.add_argument("--data", default=None, help="digits[:test|train|all], digits8:..., digits-m:..., an "
                                                  "ImageFolder folder, MNIST *-images-idx3-ubyte[.gz], CIFAR-10 "
                                                  "*.bin or its folder (default: digits:test)")
    gen.add_argument("--out", required=False, default=None, help="output folder (required)")
    gen.add_argument("--device", type=_device, default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    gen.add_argument("--batch-size", type=_positive_int, default=None, help="images per shard (default: 256)")
    gen.add_argument("--memory-budget", type=_positive_int, default=None, help="bytes per forward chunk")
    gen.add_argument("--seed", type=int, default=None, help="seed of every attack (default: 0)")
    gen.add_argument("--limit", type=_positive_int, default=None, help="attack at most this many input images")
    gen.add_argument("--classes", default=None, help="only these true classes, comma separated (e.g. 3,5)")
    gen.add_argument("--overwrite", action="store_true",
                     help="replace a different job in --out (or this job, if its model or input changed)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    gen.add_argument("--list-attacks", action="store_true", help="print the registered attacks and exit")

    exp = sub.add_parser("export", help="write a generated dataset's images as lossless PNGs")
    exp.add_argument("dataset", help="a folder written by pyadv generate")
    exp.add_argument("--png", required=True, metavar="DIR", help="output folder")
    exp.add_argument("--quiet", action="store_true", help="no progress bar")

    from .bench import SUITES

    bench = sub.add_parser("bench", help="time pyadv against the installed peer libraries on this machine",
                           description="Runs the benchmark families of a suite (the same code as "
                                       "benchmarks/<family>.py) and prints pyadv's throughput and its speed-up over "
                                       "each installed peer; peers that are not installed are listed with the pip "
                                       "command that adds them.")
    bench.add_argument("--suite", choices=tuple(SUITES), default="all", help="which families (default: all)")
    bench.add_argument("--only", nargs="+", choices=SUITES["all"], metavar="FAMILY",
                       help=f"only these families ({', '.join(SUITES['all'])})")
    bench.add_argument("--device", type=_device, default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    bench.add_argument("--threads", type=_positive_int, default=2, help="torch intra-op threads (default: 2)")
    bench.add_argument("--quick", action="store_true", help="small sizes and few rounds: a smoke run, minutes")
    bench.add_argument("--json", metavar="OUT", default=None,
                       help="also write the report (table rows and each family's full results) to this JSON file")
    return p


class UsageError(ValueError):
    """A problem with what was asked (exit code 2), found before any work starts."""


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
        elif args.command == "generate":
            from .generate_cli import run_generate

            return run_generate(args, argv)
        elif args.command == "export":
            from .data import export_png

            n = export_png(args.dataset, args.png, progress=not args.quiet)
            print(f"wrote {n} PNGs to {args.png}")
        elif args.command == "bench":
            return run_bench(args)
    except UsageError as e:
        print(f"pyadv {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: a line, not a traceback, and the shell's 128 + SIGINT
        resume = "; rerun the same command to resume (finished shards are kept)" if args.command == "generate" else ""
        print(f"pyadv {args.command}: interrupted{resume}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, RuntimeError, OSError) as e:
        print(f"pyadv {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


def run_bench(args) -> int:
    from pathlib import Path

    from . import bench
    from ._io import write_json_atomic

    if args.only and args.suite != "all":
        outside = [f for f in args.only if f not in bench.SUITES[args.suite]]
        if outside:
            raise UsageError(f"--only {' '.join(outside)}: not in --suite {args.suite} "
                             f"({', '.join(bench.SUITES[args.suite])})")
    if args.json is not None and Path(args.json).is_dir():
        raise UsageError(f"--json {args.json}: is a directory; give a file path")
    import contextlib

    # the families' running commentary goes to stderr, so that stdout is the table alone
    with contextlib.redirect_stdout(sys.stderr):
        report = bench.run(args.suite, families=args.only, device=args.device, threads=args.threads,
                           quick=args.quick)
    print(bench.table(report))
    if args.json is not None:
        write_json_atomic(Path(args.json), report)
        print(f"wrote {args.json}")
    return 0
