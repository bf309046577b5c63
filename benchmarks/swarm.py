"""The swarm benchmark: its cases, peers and JSON are in pyadv/bench/swarm.py, shared with
`pyadv bench`. Writes benchmarks/results/swarm.json (or --out); --help lists the options.

    python benchmarks/swarm.py [--threads 2] [--device cpu] [--quick]
"""
from pyadv.bench import swarm
from pyadv.bench.harness import script

if __name__ == "__main__":
    script(swarm)
