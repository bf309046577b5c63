"""Benchmark harness: warm-up, median of several timed runs, an explicit thread count and
device, machine and version facts, an atomic JSON writer, and the one entry point
(``script``) through which both ``python benchmarks/<family>.py`` and ``pyadv bench`` run a
benchmark module.

Modules time pyadv and its peers in the same process on the same inputs; the ratios
measured side by side are the figures the project quotes.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

#: Where ``python benchmarks/<family>.py`` writes, in a source checkout.
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def sync(device) -> None:
    """Waits for the device's queued work, so that a timer read afterwards covers it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn: Callable[[], object], *, warmup: int = 3, repeat: int = 20, min_seconds: float = 0.2,
           device="cpu") -> dict:
    """Median wall time of ``fn()`` in seconds over at least ``repeat`` runs and
    ``min_seconds`` of timing, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= 10 * repeat:
            break
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times),
            "iqr_s": (statistics.quantiles(times, n=4)[2] - statistics.quantiles(times, n=4)[0])
            if len(times) >= 4 else 0.0}


def interleaved(fns: dict[str, Callable[[], object]], *, rounds: int = 20, warmup: int = 3,
                min_call_s: float = 0.01, device="cpu") -> dict[str, dict]:
    """Times several functions in alternating rounds (a, b, c, a, b, c, ...), so that a
    noisy machine (a shared VM, a CPU changing clock) slows them all alike; each round calls
    a function enough times to last ``min_call_s``. Returns per function the median seconds
    per call, and ``ratios_to[name]``: the median over rounds of time(other) / time(name),
    the figure to quote."""
    calls = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        one = max(time.perf_counter() - t0, 1e-7)
        calls[name] = max(1, int(min_call_s / one))
    per_round: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for name in order:
            fn, n = fns[name], calls[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            sync(device)
            per_round[name].append((time.perf_counter() - t0) / n)
    out = {}
    for name, ts in per_round.items():
        out[name] = {"median_s": statistics.median(ts), "min_s": min(ts), "rounds": rounds,
                     "calls_per_round": calls[name],
                     "ratios_to": {other: statistics.median(o / t for o, t in zip(per_round[other], ts))
                                   for other in fns if other != name}}
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int, device="cpu") -> dict:
    import pyadv

    info = pyadv.info()
    out = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "pyadv": info["version"],
        "pyadv_cpu_isa": info["cpu_isa"], "cuda_usable": info["cuda_usable"], "device": str(device),
    }
    if torch.device(device).type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def _device(value: str) -> str:
    try:
        dev = torch.device(value)
    except RuntimeError as e:
        raise argparse.ArgumentTypeError(f"not a torch device: {value!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"device {value!r} asked for, but torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"device {value!r}: the benchmarks run on cpu or cuda[:N]")
    return value


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    p.add_argument("--device", type=_device, default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--repeat", type=int, default=20, help="timed rounds per measurement (median; default: 20)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/<family>.json)")
    p.add_argument("--quick", action="store_true", help="fewer runs, for a smoke test")
    return p


def setup_threads(threads: int) -> None:
    if threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def results_path(family: str, out: Path | None = None) -> Path:
    """Where a family's results file is: ``out`` if given, else benchmarks/results/FAMILY.json."""
    return Path(out) if out else RESULTS / f"{family}.json"


def write_results(family: str, payload: dict, out: Path | None = None) -> Path:
    from pyadv._io import write_json_atomic

    path = results_path(family, out)
    write_json_atomic(path, payload)
    return path


def script(module, argv=None) -> dict:
    """Runs a benchmark module as its script: parse ``argv``, ``module.run(args)``, write the
    JSON (``--out`` or benchmarks/results/<family>.json). Returns the payload."""
    args = module.build_parser().parse_args(argv)
    setup_threads(args.threads)
    payload = module.run(args)
    print(f"wrote {write_results(module.FAMILY, payload, args.out)}")
    return payload


class TimedModel(nn.Module):
    """Counts the wall time and images of every forward pass of the wrapped model."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.seconds = 0.0
        self.images = 0

    def forward(self, x):
        t0 = time.perf_counter()
        out = self.model(x)
        self.seconds += time.perf_counter() - t0
        self.images += len(x)
        return out

    def reset(self):
        self.seconds, self.images = 0.0, 0


def alternating(names: list[str], rounds: int, call: Callable[[str, int], object], device="cpu") -> dict[str, list]:
    """Calls ``call(name, round)`` for every name in every round, the order reversed every
    other round, so that a machine whose speed drifts slows them all alike. Returns each
    name's wall seconds per round (device work included)."""
    times: dict[str, list] = {n: [] for n in names}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            t0 = time.perf_counter()
            call(n, r)
            sync(device)
            times[n].append(time.perf_counter() - t0)
    return times


def median_ratio(times: dict[str, list], name: str, ref: str = "pyadv") -> float:
    """The median over rounds of time(name) / time(ref): how many times ``ref`` is faster."""
    return statistics.median(t / p for t, p in zip(times[name], times[ref]))
