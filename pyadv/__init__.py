"""pyadv: fast adversarial image generation and adversarial training on PyTorch.

Hot loops are C++/CUDA torch custom ops (``torch.ops.pyadv``), loaded by the compiled
module ``pyadv._C``; ``pyadv.ops`` is their typed Python face.
"""
import torch  # noqa: F401  (loads libtorch before the extension that links to it)

from . import _C  # noqa: F401  (registers torch.ops.pyadv)
from . import ops
from ._info import info

__version__ = _C.build_info()["version"]
__all__ = ["ops", "info", "__version__"]
