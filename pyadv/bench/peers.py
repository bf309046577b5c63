"""The peer libraries the benchmarks compare with, and how each is installed.

Each is installed with ``pip install --no-deps`` (as ``make bench`` does): their declared
dependencies would replace a CPU torch with a CUDA one. A peer that does not import is
reported with the reason and the command that adds it, and the benchmark runs without it.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

#: name -> (module it imports as, the pip command that installs it beside a CPU torch)
PEERS = {
    "torchattacks": ("torchattacks", "pip install --no-deps torchattacks==3.5.1"),
    "adv-lib": ("adv_lib", "pip install --no-deps adv-lib==0.2.8"),
    "art": ("art", "pip install --no-deps adversarial-robustness-toolbox==1.20.1 six"),
    "pyswarms": ("pyswarms", "pip install pyswarms"),
    "scipy": ("scipy", "pip install scipy"),
    "scikit-image": ("skimage", "pip install scikit-image"),
    "opencv": ("cv2", "pip install opencv-python-headless"),
    "kornia": ("kornia", "pip install --no-deps kornia kornia-rs"),
    "pytorch-msssim": ("pytorch_msssim", "pip install --no-deps pytorch-msssim"),
    "piq": ("piq", "pip install --no-deps piq"),
    "torchmetrics": ("torchmetrics", "pip install --no-deps torchmetrics lightning-utilities"),
}


def installed(name: str) -> bool:
    """Whether the peer's package is importable (found, not imported: importing ART or
    torchmetrics costs seconds)."""
    return importlib.util.find_spec(PEERS[name][0]) is not None


def pip_command(name: str) -> str:
    return PEERS[name][1]


def torchattacks():
    return importlib.import_module("torchattacks")


def adv_lib():
    """adv-lib's PGD, APGD and C&W L2 functions. Its ``adv_lib.attacks`` package imports every attack,
    among them one needing torchvision (an LPIPS distance) and a plotting callback needing
    visdom; torchvision's wheels need their own torch build, so the two modules benchmarked
    are loaded without the package's __init__, and the callback type, never used (callback
    stays None), is given a stand-in name."""
    import adv_lib as root

    if "adv_lib.utils.visdom_logger" not in sys.modules:
        try:
            importlib.import_module("adv_lib.utils.visdom_logger")
        except ImportError:
            stand_in = types.ModuleType("adv_lib.utils.visdom_logger")
            stand_in.VisdomLogger = object
            sys.modules["adv_lib.utils.visdom_logger"] = stand_in
    if "adv_lib.attacks" not in sys.modules:
        pkg = types.ModuleType("adv_lib.attacks")
        pkg.__path__ = [root.__path__[0] + "/attacks"]
        sys.modules["adv_lib.attacks"] = pkg
    pgd = importlib.import_module("adv_lib.attacks.projected_gradient_descent")
    apgd = importlib.import_module("adv_lib.attacks.auto_pgd")
    cw = importlib.import_module("adv_lib.attacks.carlini_wagner.l2")
    return types.SimpleNamespace(pgd_linf=pgd.pgd_linf, apgd=apgd.apgd, carlini_wagner_l2=cw.carlini_wagner_l2,
                                 version=root.__version__)


def art():
    import art as root
    from art.attacks import evasion
    from art.estimators.classification import PyTorchClassifier

    return types.SimpleNamespace(evasion=evasion, PyTorchClassifier=PyTorchClassifier, version=root.__version__)


def load() -> tuple[dict, dict]:
    """The attack peers: ({name: module-like}, {name: why it is missing})."""
    found, missing = {}, {}
    for name, fn in (("torchattacks", torchattacks), ("adv-lib", adv_lib), ("art", art)):
        try:
            found[name] = fn()
        except Exception as e:  # an import error of any kind: report it, benchmark the rest
            missing[name] = f"{type(e).__name__}: {e}"
    return found, missing
