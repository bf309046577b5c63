"""`pyadv generate`: the command line face of :func:`pyadv.data.generate`.

Everything that can be checked before the job starts is (attack names and options, model,
weights, data, the images against the model); a problem there is a usage error (exit 2).
Under torchrun (WORLD_SIZE > 1) each rank takes its shards; gloo on CPUs, NCCL on GPUs."""
from __future__ import annotations

import json
import logging
import os
import shlex
import sys

import torch

from .cli import UsageError

log = logging.getLogger("pyadv.generate")


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(items: list[str]) -> dict:
    out = {}
    for it in items:
        name, eq, value = it.partition("=")
        if not eq or not name:
            raise UsageError(f"--option {it!r}: expected NAME=VALUE")
        out[name.strip()] = _value(value)
    return out


def _classes(value):
    if value is None:
        return None
    if isinstance(value, list):
        return [int(v) for v in value]
    try:
        return [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--classes {value!r}: expected class numbers separated by commas, e.g. 3,5") from None


def run_generate(args, argv) -> int:
    from .attacks import available
    from .data import generate, load_config, open_source, parse_parts
    from .models.loading import load_model
    from .data.generate import JobRefused, select_images
    from ._digest import file_sha256

    if args.list_attacks:
        print("\n".join(available()))
        return 0
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config) if args.config else {}
        allowed = {"attacks", "model", "weights", "data", "seed", "batch_size", "limit", "classes"}
        unknown = set(cfg) - allowed
        if unknown:
            raise UsageError(f"config {args.config}: unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                             f"{', '.join(sorted(allowed))}")

        def pick(name, default):
            v = getattr(args, name)
            return v if v is not None else cfg.get(name, default)

        if args.attack:
            items = [{"attack": args.attack, "options": _options(args.option)}]
        elif "attacks" in cfg:
            if args.option:
                raise UsageError("--option applies to --attack; put options of a config's attacks in the config")
            items = cfg["attacks"]
        else:
            raise UsageError("give --attack NAME (with --option NAME=VALUE ...) or --config FILE")
        if not args.out:
            raise UsageError("--out is required: the folder the dataset goes to")
        if args.memory_budget is not None:
            for it in items:
                if isinstance(it, dict):
                    it.setdefault("options", {}).setdefault("memory_budget", args.memory_budget)
        parts = parse_parts(items)
        model_spec = pick("model", "digits-cnn")
        weights = pick("weights", None)
        model = load_model(model_spec, weights, progress=not args.quiet).to(args.device)
        source = open_source(pick("data", "digits:test"))
        probe = source.images(torch.arange(1)).to(args.device)
        try:
            with torch.inference_mode():
                model.eval()(probe)
        except Exception as e:
            raise UsageError(f"the images ({tuple(probe.shape[1:])} as C, H, W from {source.name}) do not fit the "
                             f"model {model_spec}: {type(e).__name__}: {e}") from None
        seed = int(pick("seed", 0))
        batch = int(pick("batch_size", 256))
        limit = pick("limit", None)
        classes = _classes(pick("classes", None))
        select_images(source, classes, limit)  # an empty selection is a usage error, found now
    except UsageError:
        raise
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None

    rank, world, barrier = 0, 1, None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if str(args.device).startswith("cuda") else "gloo")
        rank, world, barrier = dist.get_rank(), dist.get_world_size(), dist.barrier
    command = "pyadv " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    try:
        s = generate(args.out, parts, model, source, model_spec=model_spec,
                     weights_digest=file_sha256(weights) if weights else None, batch_size=batch, seed=seed,
                     limit=limit, classes=classes, device=args.device, overwrite=args.overwrite,
                     progress=not args.quiet and rank == 0, command=command, rank=rank, world=world, barrier=barrier)
    except JobRefused as e:
        raise UsageError(str(e)) from None
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank == 0:
        print(f"wrote {args.out}: {s['samples']} samples ({s['successes']} successes) from {s['shards']} shards "
              f"({s['resumed_shards']} already there)")
    return 0
