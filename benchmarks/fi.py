"""The fi benchmark: its cases, peers and JSON are in pyadv/bench/fi.py, shared with
`pyadv bench`. Writes benchmarks/results/fi.json (or --out); --help lists the options.

    python benchmarks/fi.py [--threads 2] [--device cpu] [--quick]
"""
from pyadv.bench import fi
from pyadv.bench.harness import script

if __name__ == "__main__":
    script(fi)
