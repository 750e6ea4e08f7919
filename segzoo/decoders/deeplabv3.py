"""DeepLabV3 (Chen et al., 2017): ASPP on the deepest feature, as torchvision's ``DeepLabHead``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from segzoo.core.registry import register_decoder
from segzoo.decoders.base import Decoder
from segzoo.layers import ASPP, ConvBNReLU

__all__ = ["DeepLabV3Decoder"]


@register_decoder("deeplabv3")
class DeepLabV3Decoder(Decoder):
    """ASPP (``atrous_rates``, image pooling, optional depthwise-separable convs) then a 3 x 3 ConvBNReLU."""

    default_output_stride = 8

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_reductions: Sequence[int],
        channels: int = 256,
        atrous_rates: Sequence[int] = (12, 24, 36),
        separable: bool = False,
        aspp_dropout: float = 0.5,
    ) -> None:
        super().__init__(encoder_channels, encoder_reductions)
        self.aspp = ASPP(encoder_channels[-1], channels, atrous_rates, separable=separable, dropout=aspp_dropout)
        self.conv = ConvBNReLU(channels, channels, 3, separable=separable)
        self.out_channels = channels
        self.output_reduction = encoder_reductions[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.conv(self.aspp(features[-1]))
