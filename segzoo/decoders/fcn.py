"""Fully convolutional head (Long et al., 2015), as torchvision's ``FCNHead``, with optional FCN-8s skips."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import register_decoder
from segzoo.decoders.base import Decoder
from segzoo.layers import ConvBNReLU

__all__ = ["FCNDecoder"]


@register_decoder("fcn")
class FCNDecoder(Decoder):
    """3 x 3 ConvBNReLU (to a quarter of the input channels by default) and dropout on the deepest feature.

    ``skip_fusion=True`` adds FCN-8s-style fusion: the result is upsampled and
    summed with 1 x 1 projections of the two features before the deepest.
    """

    default_output_stride = 8

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_reductions: Sequence[int],
        channels: int | None = None,
        dropout: float = 0.1,
        skip_fusion: bool = False,
    ) -> None:
        super().__init__(encoder_channels, encoder_reductions)
        deep = encoder_channels[-1]
        mid = deep // 4 if channels is None else int(channels)
        self.conv = ConvBNReLU(deep, mid, 3)
        self.dropout = nn.Dropout(dropout)
        self.skip_indices: list[int] = []
        if skip_fusion:
            if len(encoder_channels) < 3:
                raise InvalidValueError(
                    f"fcn skip_fusion needs at least 3 encoder features, got reductions {list(encoder_reductions)}"
                )
            self.skip_indices = [len(encoder_channels) - 2, len(encoder_channels) - 3]
        self.skips = nn.ModuleList(nn.Conv2d(encoder_channels[i], mid, 1) for i in self.skip_indices)
        self.out_channels = mid
        self.output_reduction = encoder_reductions[self.skip_indices[-1]] if skip_fusion else encoder_reductions[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.dropout(self.conv(features[-1]))
        for idx, proj in zip(self.skip_indices, self.skips):
            skip = proj(features[idx])
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False) + skip
        return x
