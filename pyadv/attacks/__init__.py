"""Attacks on any PyTorch classifier: ``attack = pyadv.attacks.FIPSO(model, **options)``,
``result = attack(x, y, target=None)`` -> :class:`AttackResult`.

Every attack is registered by name (``available()``, ``create(name, model, **options)``),
declares its options in one dataclass, feeds the model through the shared runner
(:mod:`pyadv.attacks._runner`) and returns the same result type.
"""
from ._base import Attack, CommonOptions, attack_class, available, create, quantize, register
from .cw import CWL0, CWL2, CWLinf
from .dataset import fi_pso_dataset
from .fipso import FIPSO, FIPSOOptions, f0_loss
from .gradient import APGD, BIM, FGS, FGV, ILLC, PGD
from .lbfgs import LBFGS
from .jsma import JSMA
from .hotcold import HotCold, direction_names, hot_cold_samples
from .onepixel import OnePixel
from .sparse_rs import SparseRS
from .substitute import SubstituteAttack, train_substitute
from .result import AttackResult

__all__ = ["Attack", "AttackResult", "CommonOptions", "FIPSO", "FGS", "FGV", "BIM", "ILLC", "PGD", "APGD", "HotCold",
           "OnePixel", "SparseRS", "CWL2", "CWLinf", "CWL0", "LBFGS", "JSMA", "SubstituteAttack", "train_substitute",
           "direction_names", "hot_cold_samples", "FIPSOOptions", "available", "create",
           "attack_class", "register", "quantize", "f0_loss", "fi_pso_dataset"]
