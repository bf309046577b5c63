"""Overlaid histograms drawn straight into a PNG with Pillow, for the dataset card.

The card is written once per job, but on a fast attack a job is a fraction of a second and
matplotlib's text layout alone took 0.13 s of it (40 % of a 256-image FGS job). Bars, axes,
ticks and a legend need no layout engine: this draws them in a few milliseconds.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: matplotlib's tab10, so the card looks like the project's other figures
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
SIZE = (600, 350)
#: plot area inside the image: left, top, right, bottom
BOX = (62, 12, 588, 300)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values inside [lo, hi], as close to n of them as a step of 1, 2 or 5 times a
    power of ten allows (the larger step on a tie)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    mag = 10 ** math.floor(math.log10((hi - lo) / max(n - 1, 1)))

    def ticks(step):
        first = math.ceil(lo / step - 1e-9) * step
        return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]

    options = [ticks(m * mag) for m in (10, 5, 2, 1)]
    return min(options, key=lambda t: abs(len(t) - n))


def _label(v: float) -> str:
    return f"{v:.4g}"


def histogram_png(series: dict[str, Sequence[float]], xlabel: str, bins: int = 30):
    """A PIL image: one histogram per series over shared bins, overlaid with transparency,
    labelled axes, round ticks and a legend with each series' count. Series must be non-empty."""
    from PIL import Image, ImageDraw, ImageFont

    data = {k: np.asarray(v, dtype=np.float64) for k, v in series.items()}
    data = {k: v[np.isfinite(v)] for k, v in data.items()}
    lo = min((float(v.min()) for v in data.values() if v.size), default=0.0)
    hi = max((float(v.max()) for v in data.values() if v.size), default=1.0)
    if hi <= lo:  # one value: a bin around it
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    counts = {k: np.histogram(v, edges)[0] for k, v in data.items()}
    top = max(1, max(int(c.max()) for c in counts.values() if c.size))
    ymax = top * 1.08  # headroom above the tallest bar
    yticks = [t for t in nice_ticks(0, ymax, 5) if t == int(t)] or [0]
    L, T, R, B = BOX
    sx = lambda v: L + (v - lo) / (hi - lo) * (R - L)
    sy = lambda c: B - c / ymax * (B - T)

    img = Image.new("RGBA", SIZE, "white")
    font = ImageFont.load_default(size=11)
    for i, (name, c) in enumerate(counts.items()):
        layer = Image.new("RGBA", SIZE, (0, 0, 0, 0))
        d = ImageDraw.Draw(layer)
        colour = COLOURS[i % len(COLOURS)]
        rgb = tuple(int(colour[j:j + 2], 16) for j in (1, 3, 5))
        for k, n in enumerate(c):
            if n:
                d.rectangle([sx(edges[k]), sy(n), sx(edges[k + 1]), B], fill=rgb + (140,))
        img = Image.alpha_composite(img, layer)
    d = ImageDraw.Draw(img)
    d.rectangle([L, T, R, B], outline="black")
    for t in nice_ticks(lo, hi, 6):
        x = sx(t)
        d.line([x, B, x, B + 4], fill="black")
        d.text((x, B + 6), _label(t), fill="black", font=font, anchor="mt")
    for t in yticks:
        y = sy(t)
        d.line([L - 4, y, L, y], fill="black")
        d.text((L - 6, y), _label(t), fill="black", font=font, anchor="rm")
    d.text(((L + R) / 2, SIZE[1] - 6), xlabel, fill="black", font=font, anchor="md")
    side = Image.new("RGB", (80, 16), "white")  # the y label, turned upright
    ImageDraw.Draw(side).text((40, 8), "samples", fill="black", font=font, anchor="mm")
    img.paste(side.rotate(90, expand=True), (4, int((T + B) / 2) - 40))
    # legend, top right, as wide as its longest entry
    entries = [f"{name} ({v.size})" for name, v in data.items()]
    x0 = R - 24 - max(font.getlength(e) for e in entries)
    # a white box, as matplotlib's legend frame, so that a tall bar under it cannot hide a label
    d.rectangle([x0 - 6, T + 3, R - 4, T + 12 + 16 * len(entries)], fill="white", outline="#cccccc")
    y = T + 8
    for i, entry in enumerate(entries):
        d.rectangle([x0, y, x0 + 10, y + 10], fill=COLOURS[i % len(COLOURS)])
        d.text((x0 + 16, y + 5), entry, fill="black", font=font, anchor="lm")
        y += 16
    return img.convert("RGB")
