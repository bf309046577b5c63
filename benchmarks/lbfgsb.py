"""The L-BFGS-B benchmark: its cases, peers and JSON are in pyadv/bench/lbfgsb.py, shared with
`pyadv bench`. Writes benchmarks/results/lbfgsb.json (or --out); --help lists the options.

    python benchmarks/lbfgsb.py [--threads 2] [--quick]
"""
from pyadv.bench import lbfgsb
from pyadv.bench.harness import script

if __name__ == "__main__":
    script(lbfgsb)
