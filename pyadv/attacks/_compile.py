"""torch.compile for the runner: one compiled model per (model, backend) in a process, its
compilations counted and timed.

The runner feeds a compiled model whole chunks of one fixed size (padding a short last chunk,
or running it eagerly when padding would waste more than compiling saves), so the graphs
compiled are one per (image shape, precision, grad mode) and a shrinking active set never
recompiles. Compiling is worth it only for long runs (the digits CNN took 22 s to compile with
inductor on a 2-core CPU for 1.8x over its float32 forward, as measured when the precision
issue was filed); :func:`compile_pays` is the rule.
"""
from __future__ import annotations

import time
import weakref
from typing import Optional

import torch
from torch import nn

#: expected eager model time (s) from which ``compile=True`` compiles: about twice what a small
#: CNN's compile costs with inductor on a 2-core CPU (22 s), so that a 1.8x faster forward
#: at least pays for its compilation within the run
COMPILE_PAYS_AFTER_S = 60.0

_compiled: "weakref.WeakKeyDictionary[nn.Module, dict[str, CompiledModel]]" = weakref.WeakKeyDictionary()


def compile_available() -> Optional[str]:
    """None where torch.compile can run here, else why not."""
    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    try:
        from torch import _dynamo
    except Exception as e:  # pragma: no cover - depends on the torch build
        return f"torch._dynamo does not import ({e})"
    if not _dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python"
    return None


class CompiledModel:
    """``torch.compile(model, backend=backend, dynamic=False)``, counting the graphs it compiles
    (``compilations``) and the wall time of every call that compiled (``compile_s``)."""

    def __init__(self, model: nn.Module, backend: str):
        from torch import _dynamo

        self.backend = backend
        self.verdicts: dict = {}  # (pass kind, precision, shape, ...) -> faster than eager, measured once
        self.compilations = 0
        self.compile_s = 0.0
        compiler = _dynamo.lookup_backend(backend)

        def counting(gm, example_inputs):
            self.compilations += 1
            return compiler(gm, example_inputs)

        self.fn = torch.compile(model, backend=counting, dynamic=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        before = self.compilations
        t0 = time.perf_counter()
        out = self.fn(x)
        if self.compilations != before:
            self.compile_s += time.perf_counter() - t0
        return out


def compiled_model(model: nn.Module, backend: str) -> CompiledModel:
    """The process's compiled ``model`` for ``backend`` (built on first use)."""
    per_model = _compiled.setdefault(model, {})
    if backend not in per_model:
        per_model[backend] = CompiledModel(model, backend)
    return per_model[backend]


def compile_pays(option, expected_eager_s: Optional[float], model: nn.Module, backend: str) -> bool:
    """Whether a call compiles: ``"always"`` does; ``True`` does when the model is compiled for
    this backend already in the process (nothing left to pay) or when the call's expected eager
    model time (images it will evaluate x measured seconds per image) is at least
    COMPILE_PAYS_AFTER_S."""
    if option == "always":
        return True
    if not option:
        return False
    if backend in _compiled.get(model, {}):
        return True
    return expected_eager_s is not None and expected_eager_s >= COMPILE_PAYS_AFTER_S


def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """A new tensor: images [n, ...] followed by copies of the last one up to ``size`` rows (a
    valid input). Always a copy, made under the caller's grad mode: a compiled graph guards on
    the kind of tensor it gets (an inference tensor or not), and a chunk that needs no padding
    must not differ in kind from one that does."""
    n = len(images)
    return torch.cat([images, images[-1:].expand(size - n, *images.shape[1:])])


__all__ = ["CompiledModel", "compiled_model", "compile_pays", "compile_available", "pad_to", "COMPILE_PAYS_AFTER_S"]
