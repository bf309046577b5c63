import torch
from torch import nn


class TwoConvBN(nn.Module):
    """The classifier of paper 004 (C1/C2): two 5x5 convolutions, each with batch
    normalisation, ReLU and 2x2 max-pooling, then one fully connected layer. The paper does not
    give the widths; 32 and 64 channels with 'same' padding are used here (28 -> 14 -> 7)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 32):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, padding=2, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * side * side, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
