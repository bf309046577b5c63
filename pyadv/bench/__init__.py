"""pyadv's speed benchmarks: one implementation behind both ``python benchmarks/<family>.py``
(the scripts, which write benchmarks/results/<family>.json) and ``pyadv bench`` (which runs a
suite of them and prints pyadv's throughput beside its ratio to each peer).

Each family is a module with ``FAMILY``, ``SUITE`` ("kernels" or "attacks"), ``PEERS`` (the
libraries of :mod:`pyadv.bench.peers` it compares with), ``build_parser()``, ``run(args) ->
payload`` and ``summary(payload) -> rows``; a row is ``{"case", "rate", "unit", "vs": {peer:
time(peer) / time(pyadv)}}``, optionally with ``success`` and ``outside_model`` (the share of
pyadv's time outside the model's passes).
"""
from __future__ import annotations

import importlib
import math
import time

#: suite -> families, in the order they run (cheapest first)
SUITES = {
    "kernels": ("fi", "swarm", "lbfgsb", "image", "fi_model"),
    "attacks": ("attacks_gradient", "attacks_optim", "attacks_onepixel", "attacks_sparse", "generate", "precision"),
}
SUITES["all"] = SUITES["kernels"] + SUITES["attacks"]


def family(name: str):
    """The benchmark module of a family."""
    if name not in SUITES["all"]:
        raise ValueError(f"unknown benchmark family {name!r}; the families are {', '.join(SUITES['all'])}")
    return importlib.import_module(f"pyadv.bench.{name}")


def run(suite: str = "all", *, families=None, device="cpu", threads: int = 2, quick: bool = False,
        log=print) -> dict:
    """Runs every family of ``suite`` (or only ``families``) in this process and returns
    ``{"suite", "device", "quick", "families": {name: {"seconds", "rows", "payload"}},
    "skipped_peers": {peer: pip command}}``."""
    from .harness import machine, setup_threads
    from .peers import installed, pip_command

    if suite not in SUITES:
        raise ValueError(f"suite must be one of {', '.join(SUITES)}, got {suite!r}")
    names = list(families) if families else list(SUITES[suite])
    modules = [family(n) for n in names]
    setup_threads(threads)
    report = {"suite": suite, "device": str(device), "quick": quick, "machine": machine(threads, device),
              "families": {}, "skipped_peers": {}}
    for mod in modules:
        for peer in mod.PEERS:
            if not installed(peer):
                report["skipped_peers"][peer] = pip_command(peer)
        argv = ["--threads", str(threads), "--device", str(device)] + (["--quick"] if quick else [])
        args = mod.build_parser().parse_args(argv)
        log(f"== {mod.FAMILY} ({mod.SUITE})")
        t0 = time.perf_counter()
        payload = mod.run(args)
        report["families"][mod.FAMILY] = {"seconds": time.perf_counter() - t0, "rows": mod.summary(payload),
                                          "payload": payload}
    return report


def _fmt_rate(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def table(report: dict) -> str:
    """The report as a plain-text table: one line per case, pyadv's throughput and, per peer,
    how many times faster pyadv was (time(peer) / time(pyadv); above 1: pyadv faster)."""
    lines = []
    head = ("family", "case", "pyadv", "unit", "vs peers (x = time(peer) / time(pyadv))")
    rows = []
    for fam, entry in report["families"].items():
        for r in entry["rows"]:
            vs = "  ".join(f"{k} {v:.2f}x" for k, v in r["vs"].items()) or "-"
            extra = []
            if r.get("success") is not None:
                extra.append(f"success {r['success']:.0%}")
            if r.get("outside_model") is not None:
                extra.append(f"outside model {r['outside_model']:.0%}")
            rows.append((fam, r["case"], _fmt_rate(r["rate"]), r["unit"],
                         vs + (f"  [{', '.join(extra)}]" if extra else "")))
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)] if rows else [len(h) for h in head]
    for row in [head, tuple("-" * w for w in widths)] + rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths)) + "  " + str(row[-1]))
    if report["skipped_peers"]:
        lines.append("")
        lines.append("peers not installed (skipped):")
        for peer, cmd in sorted(report["skipped_peers"].items()):
            lines.append(f"  {peer:15s} {cmd}")
    return "\n".join(lines)
