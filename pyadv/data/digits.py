"""scikit-learn's handwritten digits (1797 real 8x8 images, shipped inside the package) as
float tensors in [0, 1], at 8x8 or bilinearly upsampled to 28x28, with a fixed split.

The split needs no random generator, so it is the same on every machine and version: within
each class, in the data set's own order, every fifth image (positions 4, 9, 14, ...) is a
test image and the others are training images. That gives 1442 training and 355 test
images, every class in both in the same proportion.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

DIGITS_CLASSES = 10
_SIZES = (8, 28)
_SPLITS = ("train", "test", "all")


@lru_cache(maxsize=1)
def _raw() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).to(torch.float32).div_(16.0).unsqueeze(1)  # [N, 1, 8, 8], 0..16 -> [0, 1]
    y = torch.from_numpy(d.target).to(torch.int64)
    return x, y


def _test_mask(y: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros_like(y, dtype=torch.bool)
    for c in range(DIGITS_CLASSES):
        idx = (y == c).nonzero().flatten()
        mask[idx[4::5]] = True
    return mask


def digits(split: str = "train", size: int = 28, *, dtype: torch.dtype = torch.float32
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(x, y)``: x [N, 1, size, size] in [0, 1], y [N] int64 labels 0-9.

    Args:
        split: "train" (1442 images), "test" (355) or "all" (1797).
        size: 8 (the original pixels) or 28 (bilinear, align_corners=False, MNIST-sized).
        dtype: a floating dtype for x.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if size not in _SIZES:
        raise ValueError(f"size must be one of {_SIZES}, got {size!r}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    x, y = _raw()
    if split != "all":
        test = _test_mask(y)
        keep = test if split == "test" else ~test
        x, y = x[keep], y[keep]
    if size == 28:
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return x.to(dtype).contiguous(), y.clone()
