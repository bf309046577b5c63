"""Benchmark harness: warm-up, median of several timed runs, an explicit thread count,
machine and version facts, and an atomic JSON writer (benchmarks/results/<family>.json).

Scripts time pyadv and its peers in the same process on the same inputs; the ratios
measured side by side are the figures the project quotes.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"


def timeit(fn: Callable[[], object], *, warmup: int = 3, repeat: int = 20, min_seconds: float = 0.2) -> dict:
    """Median wall time of ``fn()`` in seconds over at least ``repeat`` runs and
    ``min_seconds`` of timing, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 10 * repeat:
            break
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times),
            "iqr_s": (statistics.quantiles(times, n=4)[2] - statistics.quantiles(times, n=4)[0])
            if len(times) >= 4 else 0.0}


def interleaved(fns: dict[str, Callable[[], object]], *, rounds: int = 20, warmup: int = 3,
                min_call_s: float = 0.01) -> dict[str, dict]:
    """Times several functions in alternating rounds (a, b, c, a, b, c, ...), so that a
    noisy machine (a shared VM, a CPU changing clock) slows them all alike; each round calls
    a function enough times to last ``min_call_s``. Returns per function the median seconds
    per call, and ``ratios_to[name]``: the median over rounds of time(other) / time(name),
    the figure to quote."""
    calls = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
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


def machine(threads: int) -> dict:
    import pyadv

    info = pyadv.info()
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads, "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "pyadv": info["version"],
        "pyadv_cpu_isa": info["cpu_isa"], "cuda_usable": info["cuda_usable"],
    }


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    p.add_argument("--repeat", type=int, default=20, help="timed rounds per measurement (median; default: 20)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default: benchmarks/results/<family>.json)")
    p.add_argument("--quick", action="store_true", help="fewer runs, for a smoke test")
    return p


def setup_threads(threads: int) -> None:
    if threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def write_results(family: str, payload: dict, out: Path | None = None) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pyadv._io import write_json_atomic

    path = out or RESULTS / f"{family}.json"
    write_json_atomic(path, payload)
    return path


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
