"""Slow, obviously-correct pure-PyTorch specifications of every kernel, for tests."""
from .fi import group_fi_reference, pixel_fi_reference

__all__ = ["pixel_fi_reference", "group_fi_reference"]
