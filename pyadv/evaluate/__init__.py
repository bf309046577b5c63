"""Robustness reports and figures."""
from .universal import universal_table

__all__ = ["universal_table"]
