import torch
from torch import nn


class LeNet5(nn.Module):
    """LeNet as in Caffe's MNIST example: conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2,
    inner product 500, ReLU, inner product to the classes (no activation after the convolutions,
    as in that example). Input [N, C, 28, 28] in [0, 1]; output logits [N, num_classes]."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        if image_size < 16 or image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 and >= 16, got {image_size}")
        side = ((image_size - 4) // 2 - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5), nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(50 * side * side, 500), nn.ReLU(inplace=True),
                                        nn.Linear(500, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
