"""The attacks_gradient benchmark: its cases, peers and JSON are in pyadv/bench/attacks_gradient.py, shared with
`pyadv bench`. Writes benchmarks/results/attacks_gradient.json (or --out); --help lists the options.

    python benchmarks/attacks_gradient.py [--threads 2] [--device cpu] [--quick]
"""
from pyadv.bench import attacks_gradient
from pyadv.bench.harness import script

if __name__ == "__main__":
    script(attacks_gradient)
