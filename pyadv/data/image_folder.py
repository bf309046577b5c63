"""A folder in the ImageFolder layout (``root/<class>/<image>``, classes sorted by name) as a
source whose images are decoded when a batch asks for them.

Opening reads only each file's header (its size and colour mode: Pillow's ``open`` is lazy), so
opening costs a listing and a header per file and holds no pixels: a job with ``--limit``
or a class filter decodes only the images it attacks, and a job of many shards holds one
shard's images at a time instead of the whole folder's.
"""
from __future__ import annotations

import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Pillow modes read as one grey channel; any other mode is read as RGB
GREY_MODES = ("L", "1", "I;16", "I", "F")
#: Images of at least this many pixels are decoded on threads. 256 images, 2 cores: 28x28 PNGs
#: 13-20 ms in turn against 33-61 ms on 2-4 threads (each decode is too short to win back the
#: hand-offs and the GIL); 64x64 JPEGs 43-57 against 54-144; 112x112 72-101 against 67-72;
#: 224x224 JPEGs 180 against 122-138 on 4 threads.
THREADED_PIXELS = 128 * 128


def as_unit_float(pixels: torch.Tensor) -> torch.Tensor:
    """Stored pixels (uint8 in 0..255 or float in [0, 1]) as float32 in [0, 1]."""
    return pixels.float().div_(255) if pixels.dtype == torch.uint8 else pixels.float()


class ImageFolderSource:
    """The same interface as ``Source``: ``name``, ``labels``, ``classes``, ``pixels_of(index)``,
    ``images(index)`` (float32 in [0, 1]), ``is_8bit``, ``decodes``, ``digest()``. Every image
    must have the first one's size; the folder is grey (one channel) when every image is, else
    RGB (grey images repeated to three channels)."""

    is_8bit = True
    #: its images are read from files (generate reads the next shard's on a thread)
    decodes = True

    def __init__(self, root: str | Path):
        from PIL import Image, UnidentifiedImageError

        root = Path(root)
        self.root = root
        self.name = f"imagefolder:{root}"
        self.classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not self.classes:
            raise ValueError(f"{root}: an ImageFolder needs one sub-folder per class, found none")
        files: list[Path] = []
        labels: list[int] = []
        # the listing's digest: each file's path, size, modification time and class
        listing = hashlib.sha256()
        for c, name in enumerate(self.classes):
            for f in sorted((root / name).rglob("*")):
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    st = f.stat()
                except OSError:  # a broken link: not an image file, as is_file() would say
                    continue
                if stat.S_ISREG(st.st_mode):
                    files.append(f)
                    labels.append(c)
                    listing.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0{c}\n"
                                   .encode())
        if not files:
            raise ValueError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
        size = None
        grey = True
        for f in files:
            try:
                with Image.open(f) as im:  # the header only
                    mode, (w, h) = im.mode, im.size
            except (UnidentifiedImageError, OSError) as e:
                raise ValueError(f"{f}: not an image Pillow can read ({e})") from None
            if size is None:
                size = (h, w)
            elif (h, w) != size:
                raise ValueError(f"{f}: image of {h}x{w} pixels, but the first image has {size[0]}x{size[1]}; "
                                 "every image of a data set must have the same size")
            grey = grey and mode in GREY_MODES
        self.files = files
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.size = size
        self.channels = 1 if grey else 3
        listing.update(f"{size} {self.channels}".encode())
        self._digest = listing.hexdigest()

    def digest(self) -> str:
        """sha256 of the folder's listing when it was opened (each file's path, size and
        modification time, and its class): a resumed job checks that its input is still what
        the job started on, without reading every image."""
        return self._digest

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, i: int) -> np.ndarray:
        from PIL import Image

        f = self.files[i]
        try:
            with Image.open(f) as im:
                grey = im.mode in GREY_MODES
                a = np.asarray(im.convert("L" if grey else "RGB"), dtype=np.uint8)
        except OSError as e:  # a file damaged (or changed) after the folder was opened
            raise ValueError(f"{f}: cannot decode the image ({e})") from None
        if self.channels == 1 and not grey:
            raise ValueError(f"{f}: a colour image, but every image of the folder was grey when it was opened; was it "
                             "changed after the folder was opened?")
        if a.shape[:2] != self.size:
            raise ValueError(f"{f}: decoded to {a.shape[0]}x{a.shape[1]} pixels, but the folder's images have "
                             f"{self.size[0]}x{self.size[1]}; was it changed after the folder was opened?")
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return np.repeat(a, 3, 0) if self.channels == 3 and len(a) == 1 else a

    def pixels_of(self, index: torch.Tensor) -> torch.Tensor:
        """uint8 images [len(index), C, H, W] of the given rows, as stored."""
        rows = torch.as_tensor(index).reshape(-1).tolist()
        if not rows:
            return torch.empty((0, self.channels, *self.size), dtype=torch.uint8)
        workers = min(4, os.cpu_count() or 1, len(rows))
        if self.size[0] * self.size[1] < THREADED_PIXELS or workers < 2:
            return torch.from_numpy(np.stack([self._decode(i) for i in rows]))
        # Pillow's decoders release the GIL while they work: on large images a few threads
        # decode a batch side by side
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return torch.from_numpy(np.stack(list(pool.map(self._decode, rows))))

    def images(self, index: torch.Tensor) -> torch.Tensor:
        """float32 images in [0, 1] of the given rows."""
        return as_unit_float(self.pixels_of(index))
