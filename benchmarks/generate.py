"""The generate benchmark: its cases, peers and JSON are in pyadv/bench/generate.py, shared with
`pyadv bench`. Writes benchmarks/results/generate.json (or --out); --help lists the options.

    python benchmarks/generate.py [--threads 2] [--device cpu] [--quick]
"""
from pyadv.bench import generate
from pyadv.bench.harness import script

if __name__ == "__main__":
    script(generate)
