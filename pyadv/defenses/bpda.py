"""Backward pass differentiable approximation (Athalye et al. 2018)."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn


def _tracing() -> bool:
    fx = torch.fx._symbolic_trace
    check = getattr(fx, "is_fx_symbolic_tracing", None) or fx.is_fx_tracing
    return bool(check())


class BPDA(nn.Module):
    """The model with one of its layers differentiable: on the forward pass the layer named
    ``layer`` (a name of ``model.named_modules()``) runs as it is; on the backward pass its
    gradient is that of ``approximation`` (a callable of the layer's input, output shaped like
    the layer's). The default stand-in is the layer's own ``bpda_approximation`` where it has
    one (Thermometer's relaxation), else the identity (JPEG, quantisation, denoisers that
    return an image of the input's shape).

    out = g(x) + (f(x) - g(x)).detach(): the value of f, the gradient of g."""

    def __init__(self, model: nn.Module, layer: str, approximation: Optional[Callable] = None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        modules = dict(model.named_modules())
        if layer not in modules or layer == "":
            names = [n for n in modules if n]
            raise ValueError(f"BPDA layer {layer!r} is not a module of the model; its modules are: "
                             f"{', '.join(names[:30])}{' ...' if len(names) > 30 else ''}")
        self.model, self.layer_name = model, layer
        if approximation is not None and not callable(approximation):
            raise TypeError(f"approximation must be callable, got {type(approximation).__name__}")
        self.approximation = approximation

    def _layer(self) -> nn.Module:
        return dict(self.model.named_modules())[self.layer_name]

    def _swap(self, module, args, out):
        if len(args) != 1 or not isinstance(args[0], torch.Tensor):
            raise TypeError(f"BPDA layer {self.layer_name!r} must take one tensor input")
        x = args[0]
        # resolved at the call, on the layer that runs (a copy of the model has its own)
        approximation = self.approximation or getattr(module, "bpda_approximation", None)
        g = approximation(x) if approximation is not None else x
        if not isinstance(out, torch.Tensor) or g.shape != out.shape:
            raise ValueError(f"BPDA stand-in for layer {self.layer_name!r} returns shape {tuple(g.shape)}, the layer "
                             f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}; "
                             "give an approximation of the layer's output shape")
        return g + (out - g).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _tracing():
            # a traced copy would inline the layer and lose the stand-in: refuse, so that the
            # attack runner keeps a plain copy
            raise TypeError("BPDA is not traceable by torch.fx")
        hook = self._layer().register_forward_hook(self._swap)
        try:
            return self.model(x)
        finally:
            hook.remove()

    def extra_repr(self) -> str:
        return f"layer={self.layer_name!r}"
