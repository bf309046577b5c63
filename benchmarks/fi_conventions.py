"""What the two FI conventions do on a real model: per-pixel FI of the digits CNN's test split
under eq. (1) as printed ("exact") and under the authors' guards ("sa_dnn"), measured against
the image-level bound (1 - P_y)/P_y. Not a timing: writes benchmarks/results/fi_conventions.json.

    python benchmarks/fi_conventions.py
"""
from __future__ import annotations


from pyadv.bench.harness import machine, parser, setup_threads, write_results

from pyadv import fi
from pyadv.data import digits
from pyadv.models import pretrained


def main() -> None:
    args = parser(__doc__).parse_args()
    setup_threads(args.threads)
    model = pretrained("digits-cnn", progress=False)
    x, y = digits("test", 28)
    bound = fi.image_fi(model, x, y)
    keep = bound > 1e-6  # P_y rounds to 1 in float32 for the others
    out = {"family": "fi_conventions", "machine": machine(args.threads), "images": int(keep.sum())}
    for conv in ("exact", "sa_dnn"):
        maps = fi.pixel_fi(model, x[keep], y[keep], convention=conv).flatten(1)
        b = bound[keep][:, None]
        top = maps.max(1).values / b[:, 0]
        idx = maps.topk(20, 1).indices
        r, c = idx // 28, idx % 28
        out[conv] = {
            "top_pixel_over_bound": {"min": float(top.min()), "median": float(top.median()), "max": float(top.max())},
            "pixels_within_90pct_of_bound_median": float((maps >= 0.9 * b).sum(1).float().median()),
            "top20_border_share": float(((r < 2) | (r > 25) | (c < 2) | (c > 25)).float().mean()),
            "zero_pixels_median": float((maps == 0).sum(1).float().median()),
        }
        print(conv, out[conv])
    print(f"wrote {write_results('fi_conventions', out, args.out)}")


if __name__ == "__main__":
    main()
