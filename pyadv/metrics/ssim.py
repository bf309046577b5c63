"""SSIM with scikit-image's semantics, fused in the compiled kernels, differentiable in both
images (paper 001, eq. (2)-(4): 11 x 11 Gaussian window, sigma = 1.5, K1 = 0.01, K2 = 0.03,
alpha = beta = gamma = 1).

``ssim(x, y)`` equals ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=...)`` per image (channels averaged): the
mean over the pixels whose window lies inside the image. Variances are clamped at 0 (float32
cancellation can push SSIM above 1) and the gradient is zero where the clamp acts.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _C  # noqa: F401  (registers the ops)

__all__ = ["ssim", "ssim_map"]


def _ssim_setup_context(ctx, inputs, output):
    # Saves only x and y: the backward op recomputes the forward row by row (CPU) or keeps its
    # partials for the duration of the call (CUDA), so autograd holds no O(5 B C H W) buffers.
    x, y, win, sigma, K1, K2, data_range, _want_map, _want_partials = inputs
    ctx.save_for_backward(x, y)
    ctx.args = (win, sigma, K1, K2, data_range)


def _ssim_backward(ctx, grad_score, _grad_map, _grad_partials):
    x, y = ctx.saved_tensors
    dx, dy = torch.ops.pyadv.ssim_backward(grad_score.contiguous(), x, y, *ctx.args)
    return (dx if ctx.needs_input_grad[0] else None, dy if ctx.needs_input_grad[1] else None,
            None, None, None, None, None, None, None)


# The op itself is differentiable in the score (as pytorch/extension-cpp registers its ops), so
# torch.ops.pyadv.ssim_forward works under autograd, torch.compile and opcheck alike; the map
# and partials outputs carry no gradient.
torch.library.register_autograd("pyadv::ssim_forward", _ssim_backward, setup_context=_ssim_setup_context)


def _prepare(x: torch.Tensor, y: torch.Tensor, data_range) -> tuple[torch.Tensor, torch.Tensor, bool, float]:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be tensors")
    if not x.dtype.is_floating_point or not y.dtype.is_floating_point:
        # As scikit-image asks of ambiguous inputs: the range of integer images must be stated.
        if data_range is None:
            raise ValueError(f"x and y are {x.dtype} and {y.dtype}: pass data_range (e.g. 255 for 8-bit images); "
                             "only float32/float64 images default to data_range=1")
        if x.dtype != y.dtype:
            raise TypeError(f"y must have x's dtype {x.dtype}, got {y.dtype}")
        x, y = x.float(), y.float()
    if data_range is None:
        data_range = 1.0
    single = x.dim() == 3
    if x.dim() == 2:
        x, y = x[None, None], y[None, None]
        single = True
    elif x.dim() == 3:
        x, y = x[None], y[None]
    if x.dim() != 4:
        raise ValueError(f"x must be [H, W], [C, H, W] or [B, C, H, W], got {tuple(x.shape)}")
    return x, y, single, float(data_range)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: Optional[float] = None, *, win_size: int = 11, sigma: float = 1.5,
         K1: float = 0.01, K2: float = 0.03) -> torch.Tensor:
    """Per-image SSIM [B] of x and y ([B, C, H, W]; [C, H, W] or [H, W] give a scalar),
    differentiable with respect to both. ``data_range`` defaults to 1 for float images and must be
    given for integer ones (e.g. 255), which are scored in float32. Images smaller than the window
    raise ValueError, as in scikit-image; NaN or Inf in an image raises ValueError."""
    x, y, single, data_range = _prepare(x, y, data_range)
    out, _, _ = torch.ops.pyadv.ssim_forward(x, y, int(win_size), float(sigma), float(K1), float(K2), data_range,
                                             False, False)
    return out[0] if single else out


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: Optional[float] = None, *, win_size: int = 11, sigma: float = 1.5,
             K1: float = 0.01, K2: float = 0.03) -> torch.Tensor:
    """The SSIM map over the valid region, [B, C, H - win + 1, W - win + 1] (not differentiable)."""
    x, y, _, data_range = _prepare(x, y, data_range)
    _, m, _ = torch.ops.pyadv.ssim_forward(x, y, int(win_size), float(sigma), float(K1), float(K2), data_range,
                                           True, False)
    return m


@torch.library.register_fake("pyadv::ssim_forward")
def _ssim_forward_fake(x, y, win, sigma, K1, K2, data_range, want_map, want_partials):
    B, C, H, W = x.shape
    hv, wv = H - win + 1, W - win + 1
    return (x.new_empty(B), x.new_empty((B, C, hv, wv)) if want_map else x.new_empty(0),
            x.new_empty((B, C, 5, hv, wv)) if want_partials else x.new_empty(0))


@torch.library.register_fake("pyadv::ssim_backward")
def _ssim_backward_fake(grad, x, y, win, sigma, K1, K2, data_range):
    return torch.empty_like(x), torch.empty_like(y)
