"""sha256 digests of what a job depends on, for provenance and for refusing a resume whose input
changed: files read in blocks, tensors hashed from their own bytes (no copy on the CPU)."""
from __future__ import annotations

import hashlib
import os
from typing import Iterable

import torch


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tensors_sha256(named: Iterable[tuple[str, object]], header: str = "") -> str:
    """Of ``header`` and each tensor's name, dtype, shape and values, in the order given (a
    state dict's other entries, a module's extra state, by their repr)."""
    h = hashlib.sha256(header.encode())
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            h.update(f"\n{name} {t!r}\n".encode())
            continue
        t = t.detach()
        t = t.to_dense() if t.layout != torch.strided else t
        h.update(f"\n{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.cpu().contiguous().flatten().view(torch.uint8).numpy().data)
    return h.hexdigest()
