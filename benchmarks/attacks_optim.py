"""The attacks_optim benchmark: its cases, peers and JSON are in pyadv/bench/attacks_optim.py,
shared with `pyadv bench`. Writes benchmarks/results/attacks_optim.json (or --out); --help lists
the options.

    python benchmarks/attacks_optim.py [--threads 2] [--device cpu] [--quick]
"""
from pyadv.bench import attacks_optim
from pyadv.bench.harness import script

if __name__ == "__main__":
    script(attacks_optim)
