"""The image benchmark: its cases, peers and JSON are in pyadv/bench/image.py, shared with
`pyadv bench`. Writes benchmarks/results/image.json (or --out); --help lists the options.

    python benchmarks/image.py [--threads 2] [--device cpu] [--quick]
"""
from pyadv.bench import image
from pyadv.bench.harness import script

if __name__ == "__main__":
    script(image)
