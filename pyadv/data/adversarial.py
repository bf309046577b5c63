"""Reading a generated dataset back: a torch Dataset over its manifest, filterable by any
manifest field, and a lossless PNG export."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import Dataset

from .generate import FORMAT, check_shard, read_lines


class AdversarialDataset(Dataset):
    """``ds[i] -> (image float32 [C, H, W] in [0, 1], true label)`` for every sample of a
    generated dataset; ``ds.records[i]`` is its manifest line (provenance, metrics), ``ds.job``
    the job that made it (job.json: attacks and options, model and input with their sha256,
    selection, seed).

    Shards are opened with safetensors (memory-mapped) on first use. ``where(...)`` returns a
    filtered view; ``torch.utils.data.ConcatDataset([ds, clean])`` mixes it with a clean set of
    (image, label) pairs for fine-tuning.
    """

    def __init__(self, path: str | os.PathLike, records: Optional[list] = None):
        self.root = Path(path)
        job = self.root / "job.json"
        self.job = json.loads(job.read_text()) if job.exists() else {}
        if self.job.get("format") != FORMAT:
            raise ValueError(f"{self.root} is not a pyadv adversarial dataset (no job.json of format {FORMAT})")
        if records is None:
            manifest = self.root / "manifest.jsonl"
            if not manifest.exists():
                raise ValueError(f"{manifest} is missing: the generation has not finished; rerun its command")
            records = read_lines(manifest)
            counts: dict = {}
            for r in records:
                counts[r["file"]] = counts.get(r["file"], 0) + 1
            for f, n in counts.items():
                check_shard(self.root / f, n)
        self.records = records
        self._open: dict = {}

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict:
        # The open shards are not picklable, and a DataLoader's workers under spawn or forkserver
        # (macOS's default; Linux's from Python 3.14) receive the dataset pickled: each worker
        # opens the shards it reads itself.
        return {**self.__dict__, "_open": {}}

    def _shard(self, name: str):
        if name not in self._open:
            from safetensors import safe_open

            self._open[name] = safe_open(str(self.root / name), framework="pt")
        return self._open[name]

    def image(self, i: int) -> torch.Tensor:
        """The stored image (uint8 or float32, as written)."""
        r = self.records[i]
        return self._shard(r["file"]).get_slice("images")[r["row"]:r["row"] + 1][0]

    def __getitem__(self, i: int):
        img = self.image(i)
        img = img.float() / 255 if img.dtype == torch.uint8 else img.float()
        return img, self.records[i]["label"]

    def where(self, fn: Optional[Callable[[dict], bool]] = None, *, pass_min: Optional[float] = None,
              attack=None, part=None, classes=None, success: Optional[bool] = None,
              kind=None) -> "AdversarialDataset":
        """A view of the samples that pass every given filter: ``pass_min`` (PASS >= it;
        samples without PASS fail), ``attack``/``part``/``kind`` (a name or a list), ``classes``
        (true labels), ``success``, and ``fn(record) -> bool``."""
        def as_set(v):
            return None if v is None else {v} if isinstance(v, (str, int)) else set(v)

        a, p, c, k = as_set(attack), as_set(part), as_set(classes), as_set(kind)
        keep = []
        for r in self.records:
            if pass_min is not None and (r.get("pass") is None or r["pass"] < pass_min):
                continue
            if a is not None and r["attack"] not in a or p is not None and r["part"] not in p:
                continue
            if c is not None and r["label"] not in c or k is not None and r["kind"] not in k:
                continue
            if success is not None and bool(r["success"]) != success:
                continue
            if fn is not None and not fn(r):
                continue
            keep.append(r)
        view = AdversarialDataset.__new__(AdversarialDataset)
        view.root, view.records, view._open = self.root, keep, self._open
        return view


def export_png(path: str | os.PathLike, out: str | os.PathLike, progress: bool = False) -> int:
    """Writes every sample as a lossless PNG, ``out/<part>/<label>/<source>_<row>.png``; uint8
    images exactly, float images rounded to 8 bits. Returns the number written."""
    from PIL import Image

    from .._io import atomic_write

    ds = AdversarialDataset(path)
    out = Path(out)
    it = range(len(ds))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, unit="img", desc="export")
    for i in it:
        r = ds.records[i]
        img = ds.image(i)
        if img.dtype != torch.uint8:
            img = (img.float() * 255).round().clamp(0, 255).to(torch.uint8)
        arr = img.permute(1, 2, 0).numpy()
        pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        name = f"{r['source_index']:06d}_{Path(r['file']).stem}_{r['row']:05d}.png"
        atomic_write(out / r["part"] / str(r["label"]) / name, lambda tmp, p=pil: p.save(tmp, format="PNG"))
    return len(ds)
