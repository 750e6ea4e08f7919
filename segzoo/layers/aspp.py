"""Atrous Spatial Pyramid Pooling (Chen et al., DeepLabV3, 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.core.errors import InvalidValueError
from segzoo.layers.conv import ConvBNReLU

__all__ = ["ASPP", "ImagePooling"]


class ImagePooling(nn.Sequential):
    """Image-level branch: global average pool, 1 x 1 ConvBNReLU, broadcast back to the input size.

    Its BatchNorm sees one value per channel and image, so a training batch of one
    image has no batch statistics (torchvision and smp fail there with "Expected
    more than 1 value per channel"). For that case only, the running statistics
    normalise and are left unchanged; parameters and keys are the usual ones.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, out_channels, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pool, (conv, bn, relu) = self[0], self[1]
        y = conv(pool(x))
        if self.training and x.shape[0] == 1:
            y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            y = bn(y)
        return F.interpolate(relu(y), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Parallel 1 x 1, dilated 3 x 3 (one per rate) and image-pooling branches, projected to ``out_channels``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        atrous_rates: Sequence[int],
        separable: bool = False,
        dropout: float = 0.5,
        image_pooling: bool = True,
    ) -> None:
        super().__init__()
        rates = [int(r) for r in atrous_rates]
        if not rates or any(r < 1 for r in rates):
            raise InvalidValueError(f"atrous_rates must be positive integers, got {list(atrous_rates)!r}")
        branches: list[nn.Module] = [ConvBNReLU(in_channels, out_channels, kernel_size=1)]
        branches += [ConvBNReLU(in_channels, out_channels, 3, dilation=r, separable=separable) for r in rates]
        if image_pooling:
            branches.append(ImagePooling(in_channels, out_channels))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(
            ConvBNReLU(len(branches) * out_channels, out_channels, kernel_size=1),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))
