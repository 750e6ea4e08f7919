"""DeepLabV3+ (Chen et al., 2018): ASPP plus a low-level skip branch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import register_decoder
from segzoo.decoders.base import Decoder
from segzoo.layers import ASPP, ConvBNReLU

__all__ = ["DeepLabV3PlusDecoder"]


@register_decoder("deeplabv3plus")
class DeepLabV3PlusDecoder(Decoder):
    """ASPP on the deepest feature, upsampled and fused with a projected low-level feature.

    The low-level feature is the first with reduction ``low_level_reduction``
    (4 in the paper), projected to ``low_level_channels`` (48). ``separable``
    uses depthwise-separable convolutions in ASPP and the decoder, as the paper.
    """

    default_output_stride = 16

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_reductions: Sequence[int],
        channels: int = 256,
        atrous_rates: Sequence[int] = (6, 12, 18),
        separable: bool = True,
        low_level_channels: int = 48,
        low_level_reduction: int = 4,
        aspp_dropout: float = 0.5,
        align_corners: bool = False,
    ) -> None:
        super().__init__(encoder_channels, encoder_reductions)
        if low_level_reduction not in encoder_reductions:
            raise InvalidValueError(
                f"deeplabv3plus needs an encoder feature at reduction {low_level_reduction}; "
                f"the encoder's features have reductions {list(encoder_reductions)}"
            )
        self.low_level_index = list(encoder_reductions).index(low_level_reduction)
        self.align_corners = align_corners
        self.aspp = nn.Sequential(
            ASPP(encoder_channels[-1], channels, atrous_rates, separable=separable, dropout=aspp_dropout),
            ConvBNReLU(channels, channels, 3, separable=separable),
        )
        self.low_level = ConvBNReLU(encoder_channels[self.low_level_index], low_level_channels, kernel_size=1)
        self.fuse = ConvBNReLU(channels + low_level_channels, channels, 3, separable=separable)
        self.out_channels = channels
        self.output_reduction = low_level_reduction

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low = self.low_level(features[self.low_level_index])
        x = self.aspp(features[-1])
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        return self.fuse(torch.cat([x, low], dim=1))
