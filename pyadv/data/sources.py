"""Input images for dataset generation, from four places, never from a pickle:

- ``digits`` / ``digits:train`` / ``digits:test`` / ``digits:all`` (28x28) or ``digits8:...`` (8x8):
  scikit-learn's digits, shipped with the package;
- a folder in the ImageFolder layout (``root/<class>/<image>``, classes sorted by name),
  decoded batch by batch (image_folder.py);
- MNIST's IDX files (``*-images-idx3-ubyte`` with its ``*-labels-idx1-ubyte`` beside it,
  gzipped or not);
- CIFAR-10's binary version (``data_batch_N.bin`` / ``test_batch.bin``, or the folder holding
  them). Its Python version is a pickle and is refused: unpickling a file can run any code.

A source keeps the images as they are stored (uint8 where the format is 8-bit; an ImageFolder
keeps only its file list) and hands out float32 batches in [0, 1].
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._digest import tensors_sha256
from .image_folder import ImageFolderSource, as_unit_float

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class Source:
    """Images [N, C, H, W] (uint8 in 0..255 or float in [0, 1]) with labels [N] and class names."""
    name: str
    pixels: torch.Tensor
    labels: torch.Tensor
    classes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    #: its images are in memory, not read from files
    decodes = False

    def pixels_of(self, index: torch.Tensor) -> torch.Tensor:
        """The given rows' images as stored."""
        return self.pixels[index]

    def images(self, index: torch.Tensor) -> torch.Tensor:
        """float32 images in [0, 1] of the given rows."""
        return as_unit_float(self.pixels_of(index))

    @property
    def is_8bit(self) -> bool:
        return self.pixels.dtype == torch.uint8

    def digest(self) -> str:
        """sha256 of the content (pixels, labels, class names): a resumed job checks that its
        input is still what the job started on."""
        return tensors_sha256([("pixels", self.pixels), ("labels", self.labels.long())],
                              header=f"classes {list(map(str, self.classes))}")


def refuse_pickle(path: Path, what: str) -> None:
    """Raises if ``path`` is a pickle (or a torch zip archive holding one)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        raise ValueError(f"{what} {path} is a Python pickle; pyadv never unpickles files (loading one can run any "
                         "code it contains)")
    if head[:2] == b"PK":
        import zipfile

        try:
            names = zipfile.ZipFile(path).namelist()
        except zipfile.BadZipFile:
            names = []
        if any(n.endswith(".pkl") for n in names):
            raise ValueError(f"{what} {path} is a torch.save archive (a pickle inside a zip); pyadv never "
                             "unpickles files: save the state dict with safetensors instead")


def open_source(spec: str) -> Source | ImageFolderSource:
    """The source a ``--data`` value names (see the module doc)."""
    head, _, split = spec.partition(":")
    if head == "digits-m":
        from .digits_m import digits_m

        x, y = digits_m(split or "test")
        return Source(f"digits-m:{split or 'test'}", x, y, [str(i) for i in range(10)])
    if head in ("digits", "digits8"):
        from .digits import digits

        x, y = digits(split or "test", 8 if head == "digits8" else 28)
        return Source(f"{head}:{split or 'test'}", x, y, [str(i) for i in range(10)])
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"data {spec!r}: no such file or folder, and not a built-in set (digits, digits:train, "
                         "digits:test, digits:all, digits8:..., digits-m:...)")
    if path.is_dir():
        bins = sorted(path.glob("*.bin"))
        if any(p.name.startswith(("data_batch", "test_batch")) for p in bins):
            return _cifar10(path, split)
        if (path / "data_batch_1").exists() or (path / "test_batch").exists():
            raise ValueError(f"data {spec!r} is CIFAR-10's Python version (pickled batches); pyadv never unpickles "
                             "files: use the binary version (cifar-10-binary.tar.gz, data_batch_N.bin)")
        return ImageFolderSource(path)
    if path.suffix == ".bin":
        return _cifar10(path, split)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if "idx3" in name or name.endswith("-images-idx3-ubyte"):
        return _mnist_idx(path)
    refuse_pickle(path, "data file")
    raise ValueError(f"data {spec!r}: not a format pyadv reads (built-in digits, an ImageFolder folder, MNIST IDX "
                     "images-idx3-ubyte[.gz], CIFAR-10 binary *.bin)")


def _read(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _idx(path: Path, dims: int) -> np.ndarray:
    data = _read(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] != dims:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes with {dims} dimension(s) "
                         f"(magic 0x0000080{dims})")
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    n = int(np.prod(shape))
    body = data[4 + 4 * dims:]
    if len(body) != n:
        raise ValueError(f"{path}: truncated IDX file: header says {shape} ({n} bytes), the file holds {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _mnist_idx(path: Path) -> Source:
    images = _idx(path, 3)
    guess = path.name.replace("images-idx3", "labels-idx1")
    lpath = path.with_name(guess)
    if not lpath.exists() and guess.endswith(".gz"):
        lpath = path.with_name(guess[:-3])
    elif not lpath.exists():
        lpath = path.with_name(guess + ".gz")
    if not lpath.exists():
        raise ValueError(f"{path}: no labels file beside it (looked for {path.with_name(guess).name}[.gz])")
    labels = _idx(lpath, 1)
    if len(labels) != len(images):
        raise ValueError(f"{path} holds {len(images)} images but {lpath} {len(labels)} labels")
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    return Source(f"mnist-idx:{path}", x, torch.from_numpy(labels.astype(np.int64)),
                  [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 10)])


def _cifar10(path: Path, split: str) -> Source:
    if path.is_dir():
        if split in ("", "test"):
            files = [path / "test_batch.bin"]
        elif split == "train":
            files = sorted(path.glob("data_batch_*.bin"))
        else:
            raise ValueError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
        files = [f for f in files if f.exists()]
        if not files:
            raise ValueError(f"{path}: no CIFAR-10 {split or 'test'} batch (*.bin) in it")
    else:
        files = [path]
    xs, ys = [], []
    for f in files:
        data = _read(f)
        if len(data) % 3073:
            raise ValueError(f"{f}: not a CIFAR-10 binary batch (its size {len(data)} is not a multiple of 3073 "
                             "bytes, one label byte and 32x32x3 pixels per image)")
        rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3073)
        if len(rec) and rec[:, 0].max() > 9:
            raise ValueError(f"{f}: label byte {int(rec[:, 0].max())} is not a CIFAR-10 class (0-9)")
        ys.append(rec[:, 0].astype(np.int64))
        xs.append(rec[:, 1:].reshape(-1, 3, 32, 32))
    x = torch.from_numpy(np.concatenate(xs).copy())
    return Source(f"cifar10-bin:{path}", x, torch.from_numpy(np.concatenate(ys)), list(CIFAR10_CLASSES))
