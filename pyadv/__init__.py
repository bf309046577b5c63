"""pyadv: fast adversarial image generation and adversarial training on PyTorch.

Hot loops are C++/CUDA torch custom ops (``torch.ops.pyadv``), loaded by the compiled
module ``pyadv._C``; ``pyadv.ops`` is their typed Python face. ``import pyadv`` registers every
op with its fake (meta) kernel and autograd formula, so the ops work under FakeTensorMode and
``torch.compile`` at once; the subpackages are reachable as attributes, loaded on first use
(PEP 562) where they import more than torch.
"""
import importlib

import torch  # noqa: F401  (loads libtorch before the extension that links to it)

from . import _C  # noqa: F401  (registers torch.ops.pyadv)
from . import metrics, ops  # noqa: F401  (cheap; registers the metric ops' fake kernels and SSIM's autograd)
from ._info import info

__version__ = _C.build_info()["version"]

#: subpackages loaded on first attribute access
_LAZY = ("attacks", "bench", "data", "defenses", "evaluate", "fi", "models", "optim", "reference")

__all__ = ["ops", "metrics", "info", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'pyadv' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
