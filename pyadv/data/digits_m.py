"""digits-m: an RGB set built like MNIST-M (Ganin and Lempitsky 2015) without a download:
scikit-learn's digits at 32x32 blended into random 32x32 crops of the colour photographs that
ship with scikit-image, out = |crop - digit| per channel. Colour attacks, group FI and the RGB
code paths get a real case; the split is the digits' fixed split, the crops come from a
seeded generator (the same images for the same seed)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

#: The colour photographs bundled in scikit-image's package folder (read from there: no network).
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg",
          "motorcycle_left.png", "ihc.png")


@lru_cache(maxsize=1)
def _photos() -> tuple:
    from pathlib import Path

    import skimage
    from PIL import Image

    folder = Path(skimage.__file__).parent / "data"
    out = []
    for name in PHOTOS:
        path = folder / name
        if not path.exists():
            continue
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))))
    if not out:
        raise RuntimeError(f"no colour photographs found in {folder}; digits-m needs scikit-image's bundled images")
    return tuple(out)


@lru_cache(maxsize=4)
def _digits_m_all(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from .digits import _raw

    x8, y = _raw()
    digit = F.interpolate(x8, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)  # [N, 1, 32, 32]
    photos = _photos()
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(0, len(photos), (len(y),), generator=gen)
    u = torch.rand(len(y), 2, generator=gen, dtype=torch.float64)
    out = torch.empty(len(y), 3, 32, 32)
    for i in range(len(y)):
        p = photos[int(which[i])]
        top = int(u[i, 0] * (p.shape[1] - 32))
        left = int(u[i, 1] * (p.shape[2] - 32))
        out[i] = (p[:, top:top + 32, left:left + 32] - digit[i]).abs()
    return out, y


def digits_m(split: str = "train", *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (x [N, 3, 32, 32] float32 in [0, 1], y [N] labels 0-9); split "train" (1442),
    "test" (355) or "all" (1797), the digits' split."""
    from .digits import _SPLITS, _test_mask

    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    x, y = _digits_m_all(int(seed))
    if split != "all":
        test = _test_mask(y)
        keep = test if split == "test" else ~test
        x, y = x[keep], y[keep]
    return x.clone(), y.clone()
