"""The attacks_sparse benchmark: its cases, peers and JSON are in pyadv/bench/attacks_sparse.py, shared with
`pyadv bench`. Writes benchmarks/results/attacks_sparse.json (or --out); --help lists the options.

    python benchmarks/attacks_sparse.py [--threads 2] [--device cpu] [--quick]
"""
from pyadv.bench import attacks_sparse
from pyadv.bench.harness import script

if __name__ == "__main__":
    script(attacks_sparse)
