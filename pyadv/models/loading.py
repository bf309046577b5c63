"""A model named on the command line: a built-in pretrained one (``digits-cnn``), or
``package.module:factory`` with a safetensors weights file. Never a pickle."""
from __future__ import annotations

import importlib
import os
from typing import Optional

from torch import nn


def load_model(spec: str, weights: Optional[str | os.PathLike] = None, *, progress: bool = True) -> nn.Module:
    """The model ``spec`` names, in eval mode."""
    from .pretrained import PRETRAINED, pretrained

    if spec in PRETRAINED:
        if weights is not None:
            raise ValueError(f"model {spec!r} is built in and comes with its weights; --weights is for a "
                             "package.module:factory model")
        return pretrained(spec, progress=progress)
    if ":" not in spec:
        raise ValueError(f"model {spec!r}: not a built-in model ({', '.join(sorted(PRETRAINED))}) nor "
                         "package.module:factory")
    mod_name, _, fn_name = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:
        raise ValueError(f"model {spec!r}: module {mod_name!r} does not import ({type(e).__name__}: {e})") from None
    factory = getattr(mod, fn_name, None)
    if not callable(factory):
        raise ValueError(f"model {spec!r}: {mod_name} has no callable {fn_name!r}")
    try:
        model = factory()
    except Exception as e:
        raise ValueError(f"model {spec!r}: the factory raised {type(e).__name__}: {e}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {spec!r}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Loads a safetensors state dict, with an error naming each tensor whose name or shape
    does not match."""
    from safetensors.torch import load_file

    from ..data.sources import refuse_pickle

    refuse_pickle(path, "weights file")
    if not str(path).endswith(".safetensors"):
        raise ValueError(f"weights {path}: pyadv reads safetensors files only (*.safetensors)")
    state = load_file(str(path))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or extra or shapes:
        bits = []
        if shapes:
            bits.append("shapes differ for " + "; ".join(shapes[:5]))
        if missing:
            bits.append("missing " + ", ".join(missing[:5]))
        if extra:
            bits.append("unexpected " + ", ".join(extra[:5]))
        raise ValueError(f"weights {path} do not fit the model: " + "; ".join(bits))
    model.load_state_dict(state)
