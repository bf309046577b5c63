"""The fi_model benchmark: its cases, peers and JSON are in pyadv/bench/fi_model.py, shared with
`pyadv bench`. Writes benchmarks/results/fi_model.json (or --out); --help lists the options.

    python benchmarks/fi_model.py [--threads 2] [--device cpu] [--quick]
"""
from pyadv.bench import fi_model
from pyadv.bench.harness import script

if __name__ == "__main__":
    script(fi_model)
