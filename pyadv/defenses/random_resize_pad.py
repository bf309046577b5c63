"""Mitigating adversarial effects through randomization (Xie et al. 2018), as Athalye et al.
(2018) describe it: a 299 x 299 input is resized to r x r, r uniform in [299, 331], and
zero-padded at a random place to 331 x 331."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._random import Seeded


class RandomResizePad(Seeded, nn.Module):
    """Resizes each image of [N, C, s, s] to r x r, r a uniform integer in [s, S], and pads it
    with zeros at a uniform offset to S x S, with S = round(s 331 / 299) unless given (the
    paper's proportions: 28 -> 31). Each image draws its own r and offset from the module's
    seeded generator, call after call; the classifier behind it takes S x S inputs."""

    def __init__(self, size: int, out_size: int | None = None, *, seed: int = 0, mode: str = "bilinear"):
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        out = round(size * 331 / 299) if out_size is None else out_size
        if isinstance(out, bool) or not isinstance(out, int) or out < size:
            raise ValueError(f"out_size must be an int >= size ({size}), got {out_size!r}")
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
        self.size, self.out_size, self.mode = size, out, mode
        self._init_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"RandomResizePad({self.size}) expects [N, C, {self.size}, {self.size}] images, "
                             f"got {tuple(x.shape)}")
        N = len(x)
        S = self.out_size
        r = torch.randint(self.size, S + 1, (N,), generator=self._gen)
        u = torch.rand(N, 2, generator=self._gen)
        out = x.new_zeros(N, x.shape[1], S, S)
        dst = out.permute(0, 2, 3, 1)  # a view: [N, S, S, C], written through below
        kw = {"align_corners": False} if self.mode == "bilinear" else {}
        for r_val in r.unique().tolist():
            rows = (r == r_val).nonzero().flatten()
            small = F.interpolate(x[rows.to(x.device)], size=(r_val, r_val), mode=self.mode, **kw)
            off = (u[rows] * (S - r_val + 1)).floor().long().clamp_max(S - r_val)
            span = torch.arange(r_val)
            top = (off[:, 0, None] + span).to(x.device)
            left = (off[:, 1, None] + span).to(x.device)
            dst[rows.to(x.device)[:, None, None], top[:, :, None], left[:, None, :]] = small.permute(0, 2, 3, 1)
        return out

    def extra_repr(self) -> str:
        return f"size={self.size}, out_size={self.out_size}, seed={self.seed}, mode={self.mode!r}"
