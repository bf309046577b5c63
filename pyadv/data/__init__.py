"""Data: the built-in digits, input sources for dataset generation (ImageFolder, MNIST IDX,
CIFAR-10 binary), adversarial dataset generation and reading it back."""
from .adversarial import AdversarialDataset, export_png
from .digits import DIGITS_CLASSES, digits
from .digits_m import digits_m
from .generate import Part, generate, load_config, parse_parts
from .sources import Source, open_source

__all__ = ["digits", "digits_m", "DIGITS_CLASSES", "Source", "open_source", "Part", "parse_parts", "load_config", "generate",
           "AdversarialDataset", "export_png"]
