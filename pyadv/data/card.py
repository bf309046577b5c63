"""The dataset card: README.md in a generated dataset, with counts, success rates per attack
and class, L2 and PASS histograms (PNG), and the command that made it."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Optional

from .._io import atomic_write, write_text_atomic
from .histogram_png import histogram_png, png_bytes


def _histogram(path: Path, series: dict, xlabel: str) -> bool:
    """One histogram per part, overlaid, as a PNG; False when there is nothing to plot."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return False
    data = png_bytes(histogram_png(series, xlabel))
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return True


def part_summary(lines: list[dict]) -> dict:
    """Per part of a dataset, in manifest order: its attack, source images, samples, successes."""
    out: dict = {}
    for line in lines:
        p = out.setdefault(line["part"], {"attack": line["attack"], "images": set(), "samples": 0, "successes": 0})
        p["images"].add(line["source_index"])
        p["samples"] += 1
        p["successes"] += bool(line["success"])
    return {k: {**v, "images": len(v["images"])} for k, v in out.items()}


def _provenance(job: dict) -> list[str]:
    """The model and the input the dataset was made from, with the digests job.json holds."""
    sha = lambda key: f" (sha256 `{job[key][:16]}`)" if job.get(key) else ""
    return [f"Model `{job.get('model')}`{sha('model_sha256')}, input `{job.get('data')}`{sha('data_sha256')}, "
            f"{job.get('images')} images selected, seed {job.get('seed')}, batch size {job.get('batch_size')}; "
            "`job.json` holds the whole job.", ""]


def write_card(out: Path, lines: list[dict], source, command: Optional[str], job: dict) -> None:
    summary = part_summary(lines)
    parts = list(summary)
    by_part = defaultdict(list)
    for line in lines:
        by_part[line["part"]].append(line)
    classes = getattr(source, "classes", []) or []
    rows = [f"| {p} | {v['attack']} | {v['images']} | {v['samples']} | {v['successes']} | "
            f"{100 * v['successes'] / max(v['samples'], 1):.1f} % |" for p, v in summary.items()]
    per_class = []
    labels = sorted({line["label"] for line in lines})
    for p in parts:
        cells = []
        for c in labels:
            ls = [line for line in by_part[p] if line["label"] == c]
            cells.append(f"{100 * sum(bool(line['success']) for line in ls) / len(ls):.0f} %" if ls else "-")
        per_class.append(f"| {p} | " + " | ".join(cells) + " |")
    names = [classes[c] if c < len(classes) else str(c) for c in labels]
    l2 = {p: [line["l2"] for line in by_part[p] if line["success"] and line["l2"] is not None] for p in parts}
    ps = {p: [line["pass"] for line in by_part[p] if line["success"] and line["pass"] is not None] for p in parts}
    has_l2 = _histogram(out / "l2.png", l2, "L2 of the perturbation (successful samples)")
    has_pass = _histogram(out / "pass.png", ps, "PASS (successful samples)")
    text = [
        "# Adversarial dataset", "",
        f"Made by pyadv from `{source.name}` ({len(lines)} samples in `manifest.jsonl`, shards under one folder "
        "per attack).", "",
        *_provenance(job),
        "Command:", "", "```", command or "(generated from Python: pyadv.data.generate)", "```", "",
        "| part | attack | source images | samples | successes | success rate |", "|---|---|---|---|---|---|",
        *rows, "",
        "Success rate per true class:", "",
        "| part | " + " | ".join(names) + " |", "|---|" + "---|" * len(names), *per_class, "",
    ]
    if has_l2:
        text += ["![L2 histogram](l2.png)", ""]
    if has_pass:
        text += ["![PASS histogram](pass.png)", ""]
    if not has_pass:
        text += ["PASS and SSIM are not computed for images smaller than 11 x 11 (SSIM's window).", ""]
    text += ["Images are stored as uint8 where the attack ran with `quantize=True` (exactly what a PNG holds), "
             "else as float32; `pyadv export --png` writes float images rounded to 8 bits.", ""]
    write_text_atomic(out / "README.md", "\n".join(text))
