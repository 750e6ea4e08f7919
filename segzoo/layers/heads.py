"""Output heads: per-pixel segmentation, torchvision-style auxiliary classifier, image classification."""

from __future__ import annotations

import torch
from torch import nn

from segzoo.core.errors import InvalidValueError
from segzoo.layers.conv import ConvBNReLU

__all__ = ["SegmentationHead", "AuxHead", "ClassificationHead"]


class SegmentationHead(nn.Conv2d):
    """A k x k convolution (with bias) from decoder channels to class logits."""

    def __init__(self, in_channels: int, num_classes: int, kernel_size: int = 1) -> None:
        super().__init__(in_channels, num_classes, kernel_size, padding=kernel_size // 2)


class AuxHead(nn.Sequential):
    """3 x 3 ConvBNReLU, dropout and a 1 x 1 classifier on an intermediate encoder feature."""

    def __init__(self, in_channels: int, num_classes: int, channels: int | None = None, dropout: float = 0.1) -> None:
        mid = in_channels // 4 if channels is None else channels
        super().__init__(ConvBNReLU(in_channels, mid), nn.Dropout(dropout), nn.Conv2d(mid, num_classes, 1))


class ClassificationHead(nn.Module):
    """Global pooling, dropout and a linear layer: image-level labels from the deepest feature."""

    def __init__(self, in_channels: int, num_classes: int, pooling: str = "avg", dropout: float = 0.0) -> None:
        super().__init__()
        pools = {"avg": nn.AdaptiveAvgPool2d(1), "max": nn.AdaptiveMaxPool2d(1)}
        if pooling not in pools:
            raise InvalidValueError(f"classification head pooling must be one of {sorted(pools)}, got {pooling!r}")
        self.pool = pools[pooling]
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))
