"""The precision benchmark: its cases and JSON are in pyadv/bench/precision.py, shared with
`pyadv bench`. Writes benchmarks/results/precision.json (or --out); --help lists the options.

    python benchmarks/precision.py [--threads 2] [--device cpu] [--quick]
"""
from pyadv.bench import precision
from pyadv.bench.harness import script

if __name__ == "__main__":
    script(precision)
