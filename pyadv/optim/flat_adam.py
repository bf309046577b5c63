"""Adam for a small model trained with many small steps (the substitute attack's MLP: 1500
steps of 64 images each).

torch.optim.Adam's step costs more in Python than in arithmetic there: 0.24 ms per step outside
the passes for a 200k-parameter MLP, of which its fused kernel is 0.12 ms (2 threads). Here the
parameters and their gradients live in one flat buffer each (the module's parameters become
views into them, and autograd accumulates into the gradient views), so that a step is one call
of the same fused kernel on one tensor, and zeroing the gradients one fill: 0.10 ms per step.
The update is torch.optim.Adam's, bit for bit (tested).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch


class FlatAdam:
    """Adam (Kingma and Ba 2015, without weight decay or AMSGrad) over ``params``, which must
    share a device and a floating-point dtype. Moves every parameter into one buffer: use the
    module's parameters as before (they are views), but keep gradients in place (``zero_grad``
    fills them with zeros instead of dropping them)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, betas=(0.9, 0.999),
                 eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("params must hold at least one parameter that requires grad")
        first = self.params[0]
        for p in self.params:
            if p.device != first.device or p.dtype != first.dtype or not p.dtype.is_floating_point:
                raise ValueError(f"params must share one device and floating-point dtype, got {p.dtype} on "
                                 f"{p.device} next to {first.dtype} on {first.device}")
        storages = [p.untyped_storage().data_ptr() for p in self.params]
        if len(set(storages)) != len(storages):  # moving them apart would untie them
            raise ValueError("params must not share storage (tied weights as separate parameters); "
                             "pass each tensor once")
        if not (lr > 0 and eps >= 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"lr must be > 0, eps >= 0 and betas in [0, 1), got {lr}, {eps}, {betas}")
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        with torch.no_grad():
            self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        for p in self.params:
            n = p.numel()
            p.data = self.flat[offset:offset + n].view_as(p)
            p.grad = self.grad[offset:offset + n].view_as(p)
            offset += n
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        # the step count as torch.optim.Adam keeps it for its fused kernel: a float32 tensor
        self.step_count = torch.zeros((), dtype=torch.float32, device=self.flat.device)
        self.fused = hasattr(torch, "_fused_adam_") and self.flat.device.type in ("cpu", "cuda")

    def zero_grad(self) -> None:
        self.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        if not self.fused:
            return self._reference_step()
        b1, b2 = self.betas
        torch._fused_adam_([self.flat], [self.grad], [self.exp_avg], [self.exp_avg_sq], [], [self.step_count],
                           lr=self.lr, beta1=b1, beta2=b2, weight_decay=0.0, eps=self.eps, amsgrad=False,
                           maximize=False)

    def _reference_step(self) -> None:
        """torch.optim.Adam's single-tensor update, where the fused kernel is missing."""
        b1, b2 = self.betas
        t = float(self.step_count)
        self.exp_avg.lerp_(self.grad, 1 - b1)
        self.exp_avg_sq.mul_(b2).addcmul_(self.grad, self.grad, value=1 - b2)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - b2 ** t)).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denom, value=-self.lr / (1 - b1 ** t))

    def release(self) -> None:
        """Drops the gradient views (the parameters stay views into the flat buffer)."""
        for p in self.params:
            p.grad = None
