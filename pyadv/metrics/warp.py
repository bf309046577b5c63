"""Perspective warp with an inverse map, bilinear, constant border 0: cv2.warpPerspective
with flags INTER_LINEAR | WARP_INVERSE_MAP and BORDER_CONSTANT (value 0).

Border choice: each of the four neighbours of a sample that falls outside the image counts as
0, as OpenCV's constant border does, so edges fade over one pixel instead of being cut. The
sample is taken at the exact position; OpenCV 5.0 does the same for float images (the tests
agree with cv2 to float32 rounding, below 2e-5).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _C  # noqa: F401  (registers the ops)

__all__ = ["warp_perspective"]


def warp_perspective(img: torch.Tensor, M: torch.Tensor, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """Warps img [B, C, H, W] (or [C, H, W]) by the homographies M [B, 3, 3] (or [3, 3]) mapping
    *output* pixel coordinates (x = column, y = row) to input coordinates. ``size`` = (H_out,
    W_out), default the input's."""
    single = img.dim() == 3
    if single:
        img = img[None]
    if M.dim() == 2:
        M = M[None].expand(img.shape[0], 3, 3)
    h, w = size if size is not None else img.shape[-2:]
    out = torch.ops.pyadv.warp_perspective(img, M, int(h), int(w))
    return out[0] if single else out


@torch.library.register_fake("pyadv::warp_perspective")
def _warp_fake(img, M, out_h, out_w):
    return img.new_empty((img.shape[0], img.shape[1], out_h, out_w))
