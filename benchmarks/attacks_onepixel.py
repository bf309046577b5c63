"""The attacks_onepixel benchmark: its cases, peers and JSON are in pyadv/bench/attacks_onepixel.py, shared with
`pyadv bench`. Writes benchmarks/results/attacks_onepixel.json (or --out); --help lists the options.

    python benchmarks/attacks_onepixel.py [--threads 2] [--device cpu] [--quick]
"""
from pyadv.bench import attacks_onepixel
from pyadv.bench.harness import script

if __name__ == "__main__":
    script(attacks_onepixel)
