"""Small model zoo: LeNet-5, the two-convolution BN classifier of paper 004, ResNet-32 of
paper 000, input normalisation, and cached pretrained weights."""
from .lenet import LeNet5
from .normalize import Normalize
from .pretrained import PRETRAINED, cache_dir, pretrained
from .resnet import ResNet32
from .twoconv import TwoConvBN

__all__ = ["LeNet5", "TwoConvBN", "ResNet32", "Normalize", "pretrained", "PRETRAINED", "cache_dir"]
