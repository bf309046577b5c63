"""The gradient-attack peers, loaded as installed by ``make bench`` (each with --no-deps, so
the CPU torch stays): torchattacks, adv-lib and ART. A peer that does not import is reported
with the reason, and the benchmark runs without it."""
from __future__ import annotations

import importlib
import sys
import types


def torchattacks():
    return importlib.import_module("torchattacks")


def adv_lib():
    """adv-lib's PGD and APGD functions. Its ``adv_lib.attacks`` package imports every attack,
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
    return types.SimpleNamespace(pgd_linf=pgd.pgd_linf, apgd=apgd.apgd, version=root.__version__)


def art():
    import art as root
    from art.attacks import evasion
    from art.estimators.classification import PyTorchClassifier

    return types.SimpleNamespace(evasion=evasion, PyTorchClassifier=PyTorchClassifier, version=root.__version__)


def load() -> tuple[dict, dict]:
    """({name: module-like}, {name: why it is missing})."""
    found, missing = {}, {}
    for name, fn in (("torchattacks", torchattacks), ("adv-lib", adv_lib), ("art", art)):
        try:
            found[name] = fn()
        except Exception as e:  # an import error of any kind: report it, benchmark the rest
            missing[name] = f"{type(e).__name__}: {e}"
    return found, missing
