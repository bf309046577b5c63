"""Pretrained models that train on first use (no download) and are cached as safetensors
plus JSON metadata.

The cache directory is ``$PYADV_CACHE`` if set, else ``$XDG_CACHE_HOME/pyadv``, else
``~/.cache/pyadv``. Files are written atomically, so an interrupted training leaves no
half-written weights; a cache entry whose metadata does not match the recipe is retrained.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .._io import atomic_write, write_json_atomic
from ..data import digits
from .resnet import ResNet32
from .twoconv import TwoConvBN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """How a pretrained model is built and trained; part of its cache key."""
    arch: str
    data: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    max_shift: int  # random translation augmentation, in pixels
    seed: int


@dataclass(frozen=True)
class Entry:
    build: Callable[[], nn.Module]
    recipe: Recipe
    min_test_accuracy: float


PRETRAINED: dict[str, Entry] = {
    "digits-cnn": Entry(
        build=lambda: TwoConvBN(in_channels=1, num_classes=10, image_size=28),
        recipe=Recipe(arch="TwoConvBN(1, 10, 28)", data="digits-28", epochs=14, batch_size=64, lr=2e-3,
                      weight_decay=1e-4, max_shift=2, seed=0),
        min_test_accuracy=0.97,
    ),
    # The original 8x8 digits, where a one-pixel attack can be checked against exhaustive search
    # (64 positions x a few values is cheap).
    "digits8-cnn": Entry(
        build=lambda: TwoConvBN(in_channels=1, num_classes=10, image_size=8),
        recipe=Recipe(arch="TwoConvBN(1, 10, 8)", data="digits-8", epochs=12, batch_size=64, lr=3e-3,
                      weight_decay=1e-4, max_shift=0, seed=0),
        min_test_accuracy=0.95,
    ),
    # RGB: digits-m (digits blended into colour photographs, MNIST-M style) with paper 000's
    # ResNet-32, for the colour code paths.
    "digits-m-resnet32": Entry(
        build=lambda: ResNet32(in_channels=3, num_classes=10),
        recipe=Recipe(arch="ResNet32(3, 10)", data="digits-m-32", epochs=12, batch_size=64, lr=3e-3,
                      weight_decay=5e-4, max_shift=2, seed=0),
        min_test_accuracy=0.90,
    ),
}


def _data(name: str):
    """(x_train, y_train, x_test, y_test) of a recipe's data name."""
    if name.startswith("digits-m"):
        from ..data.digits_m import digits_m

        return (*digits_m("train"), *digits_m("test"))
    size = int(name.rsplit("-", 1)[1])  # "digits-28", "digits-8"
    return (*digits("train", size), *digits("test", size))


def cache_dir() -> Path:
    """Where pretrained weights live (see the module docstring)."""
    env = os.environ.get("PYADV_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "pyadv"


def _random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * max_shift)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    return out.gather(3, cols)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, len(x))


def _train(entry: Entry, progress: bool) -> tuple[nn.Module, dict]:
    r = entry.recipe
    torch.manual_seed(r.seed)
    gen = torch.Generator().manual_seed(r.seed)
    model = entry.build()
    xtr, ytr, xte, yte = _data(r.data)
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    steps = r.epochs * ((len(xtr) + r.batch_size - 1) // r.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=steps)
    start = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc=f"training {r.arch} on {r.data} (first use; cached afterwards)", disable=not progress,
               leave=False)
    model.train()
    for _ in range(r.epochs):
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), r.batch_size):
            idx = perm[i:i + r.batch_size]
            xb = _random_shift(xtr[idx], r.max_shift, gen)
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    model.eval()
    meta = {
        "recipe": asdict(r),
        "test_accuracy": accuracy(model, xte, yte),
        "train_accuracy": accuracy(model, xtr, ytr),
        "train_seconds": round(time.perf_counter() - start, 2),
        "torch": torch.__version__,
    }
    return model, meta


def pretrained(name: str = "digits-cnn", *, retrain: bool = False, progress: bool = True,
               cache: str | os.PathLike | None = None) -> nn.Module:
    """Returns the named model in eval mode, training and caching it on first use.

    The model carries its metadata (recipe, ``test_accuracy``, training time) as
    ``model.pretrained_meta``. Available: ``"digits-cnn"`` (:class:`TwoConvBN` on 28x28 digits,
    >= 97 % test accuracy, about a minute on 2 cores).
    """
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; available: {sorted(PRETRAINED)}")
    entry = PRETRAINED[name]
    folder = Path(cache) if cache is not None else cache_dir()
    weights, meta_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    from safetensors.torch import load_file, save_file

    if not retrain and weights.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("recipe") == asdict(entry.recipe):
            model = entry.build()
            model.load_state_dict(load_file(str(weights)))
            model.eval()
            model.pretrained_meta = meta
            return model
        log.info("cached %s was trained with another recipe; retraining", name)
    model, meta = _train(entry, progress)
    if meta["test_accuracy"] < entry.min_test_accuracy:
        raise RuntimeError(f"{name} reached only {meta['test_accuracy']:.2%} test accuracy "
                           f"(< {entry.min_test_accuracy:.0%}); not cached")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"name": name}))
    write_json_atomic(meta_path, meta)
    log.info("trained %s: test accuracy %.2f%% in %.1f s", name, 100 * meta["test_accuracy"], meta["train_seconds"])
    model.pretrained_meta = meta
    return model
