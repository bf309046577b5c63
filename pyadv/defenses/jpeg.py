"""JPEG input compression (Guo et al. 2018; among the input transformations Athalye et al.
(2018) circumvent with BPDA)."""
from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn


class JPEGCompression(nn.Module):
    """Each image of [N, C, H, W] in [0, 1] (C = 1 or 3) is rounded to 8 bits, JPEG-encoded at
    ``quality`` with Pillow and decoded. Not differentiable (its gradient is zero): BPDA's
    default identity stand-in is the usual approximation."""

    def __init__(self, quality: int = 75):
        super().__init__()
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
            raise ValueError(f"quality must be an int in [1, 95], got {quality!r}")
        self.quality = quality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from PIL import Image

        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"JPEGCompression expects [N, 1 or 3, H, W] images, got {tuple(x.shape)}")
        arr = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for a in arr:
            img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a, mode="L" if a.shape[-1] == 1 else "RGB")
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=self.quality)
            buf.seek(0)
            dec = np.asarray(Image.open(buf).convert("L" if a.shape[-1] == 1 else "RGB"))
            out.append(dec.reshape(a.shape))
        y = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255
        # the output does not depend on x differentiably: a zero gradient, not an error
        return y + 0 * x

    def extra_repr(self) -> str:
        return f"quality={self.quality}"
