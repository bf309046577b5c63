"""Built-in data sets (no network): scikit-learn's handwritten digits."""
from .digits import DIGITS_CLASSES, digits

__all__ = ["digits", "DIGITS_CLASSES"]
