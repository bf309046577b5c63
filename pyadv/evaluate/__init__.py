"""Robustness reports and figures."""
from .hardness import adversarial_distance, hardness_figure, hardness_matrix, robustness
from .universal import universal_table

__all__ = ["universal_table", "adversarial_distance", "hardness_matrix", "hardness_figure", "robustness"]
