"""Defenses with obfuscated gradients (Athalye et al. 2018, "Obfuscated Gradients Give a False
Sense of Security"; the Raissi notes, paper 003), each a plain ``nn.Module`` so that every attack
and report can use it, and the two wrappers that break them: BPDA and EoT.

    defended = nn.Sequential(Thermometer(levels=16), classifier)     # shattered gradients
    PGD(BPDA(defended, "0"), eps=0.3)(x, y)                         # its relaxation on backward
    defended = nn.Sequential(RandomResizePad(28, seed=0), classifier)  # randomised input
    PGD(EoT(defended, samples=16), eps=0.3)(x, y)                   # gradients in expectation
"""
from .bpda import BPDA
from .eot import EoT
from .jpeg import JPEGCompression
from .random_resize_pad import RandomResizePad
from .sap import StochasticActivationPruning
from .thermometer import Thermometer

__all__ = ["BPDA", "EoT", "Thermometer", "RandomResizePad", "StochasticActivationPruning", "JPEGCompression"]
