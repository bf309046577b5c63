"""Robustness reports and figures."""
