"""Per-pixel FI reduction: pyadv's op against the same reduction composed from torch ops
(eager, and torch.compile'd unless --no-compile), and against the time it takes just
to read J once (torch.sum over J), at B=256, K=10, P=784 and B=16, K=100, P=3072. The
contenders run in alternating rounds; ratios are medians over rounds.

    python benchmarks/fi.py [--threads 2] [--device cpu] [--no-compile]
"""
from __future__ import annotations

import torch

from pyadv import _C, ops
from pyadv.bench.harness import interleaved, machine, parser, script, timeit

FAMILY, SUITE, PEERS = "fi", "kernels", ()
SIZES = [(256, 10, 784), (16, 100, 3072)]


def composed(jac: torch.Tensor, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    den = (jac**2 * probs[..., None]).sum(1)
    jt = jac.gather(1, target.view(-1, 1, 1).expand(-1, 1, jac.shape[2])).squeeze(1)
    return torch.where(den > 0, jt**2 / den, torch.zeros_like(den))


def build_parser():
    p = parser(__doc__)
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="skip the torch.compile(composed) peer (its compilation takes a while)")
    return p


def run(args) -> dict:
    dev = torch.device(args.device)
    rounds = 5 if args.quick else args.repeat
    # --quick is a smoke run: torch.compile's ~15 s of compilation would be most of it
    compiled = torch.compile(composed, dynamic=False) if args.compile and not args.quick else None
    rows = []
    for B, K, P in SIZES:
        g = torch.Generator().manual_seed(0)
        jac = torch.randn(B, K, P, generator=g).to(dev)
        probs = torch.softmax(torch.randn(B, K, generator=g), 1).to(dev)
        target = torch.randint(0, K, (B,), generator=g).to(dev)
        torch.testing.assert_close(ops.pixel_fi(jac, probs, target), composed(jac, probs, target), rtol=1e-4, atol=1e-6)
        fns = {"pyadv": lambda: ops.pixel_fi(jac, probs, target),
               "composed": lambda: composed(jac, probs, target),
               "read_jac_once": lambda: jac.sum()}
        if compiled is not None:
            compiled(jac, probs, target)
            fns["compiled"] = lambda: compiled(jac, probs, target)
        t = interleaved(fns, rounds=rounds, device=dev)
        per_isa = {}
        if dev.type == "cpu":
            before = _C.cpu_isa()
            for isa in _C.cpu_isa_supported():
                _C.set_cpu_isa(isa)
                per_isa[isa] = timeit(lambda: ops.pixel_fi(jac, probs, target), repeat=rounds)["median_s"]
            _C.set_cpu_isa(before)
        nbytes = jac.numel() * jac.element_size()
        ratios = t["pyadv"]["ratios_to"]
        row = {
            "B": B, "K": K, "P": P, "dtype": "float32", "jac_bytes": nbytes,
            "pyadv_s": t["pyadv"]["median_s"], "composed_s": t["composed"]["median_s"],
            "read_jac_once_s": t["read_jac_once"]["median_s"], "pyadv_by_isa_s": per_isa,
            "speedup_vs_composed": ratios["composed"],
            "time_vs_read_once": 1.0 / ratios["read_jac_once"],
            "pyadv_GBps": nbytes / t["pyadv"]["median_s"] / 1e9,
            "read_once_GBps": nbytes / t["read_jac_once"]["median_s"] / 1e9,
        }
        if compiled is not None:
            row["compiled_s"] = t["compiled"]["median_s"]
            row["speedup_vs_compiled"] = ratios["compiled"]
        rows.append(row)
        extra = f", torch.compile {row['speedup_vs_compiled']:.2f}x" if compiled is not None else ""
        print(f"B={B:4d} K={K:4d} P={P:5d}: pyadv {1e3 * row['pyadv_s']:.3f} ms ({row['pyadv_GBps']:.1f} GB/s), "
              f"composed {1e3 * row['composed_s']:.3f} ms -> {row['speedup_vs_composed']:.2f}x{extra}; "
              f"read J once {1e3 * row['read_jac_once_s']:.3f} ms -> pyadv/read {row['time_vs_read_once']:.2f}")
    return {"family": "fi", "machine": machine(args.threads, dev), "results": rows,
            "goal": {"speedup_vs_composed": ">= 3", "time_vs_read_once": "<= 2"}}


def summary(payload) -> list[dict]:
    return [{"case": f"pixel_fi B={r['B']} K={r['K']} P={r['P']}", "rate": r["pyadv_GBps"], "unit": "GB/s of J",
             "vs": {k: r[f"speedup_vs_{k}"] for k in ("composed", "compiled") if f"speedup_vs_{k}" in r}}
            for r in payload["results"]]


if __name__ == "__main__":
    import sys

    script(sys.modules[__name__])
