"""Lite R-ASPP (Howard et al., Searching for MobileNetV3, 2019), as torchvision's ``LRASPPHead``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import register_decoder
from segzoo.decoders.base import Decoder
from segzoo.layers import AdaptiveAvgPool2d, ConvBNReLU

__all__ = ["LRASPPDecoder"]


@register_decoder("lraspp")
class LRASPPDecoder(Decoder):
    """On the deepest feature, a 1 x 1 ConvBNReLU to ``channels`` gated by a global-pooling branch (1 x 1
    convolution, sigmoid); the result upsampled to the last feature at ``low_reduction`` and returned beside it.

    torchvision sums two 1 x 1 classifiers, one on each map; one 1 x 1 head on their concatenation is the same
    linear map, so here the decoder returns the concatenation (``low`` channels + ``channels``) and the model's
    segmentation head is that classifier.
    """

    default_output_stride = 16

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_reductions: Sequence[int],
        channels: int = 128,
        low_reduction: int = 8,
    ) -> None:
        super().__init__(encoder_channels, encoder_reductions)
        lows = [i for i, r in enumerate(encoder_reductions[:-1]) if r == low_reduction]
        if not lows:
            raise InvalidValueError(f"lraspp needs an encoder feature at low_reduction={low_reduction} before the "
                                    f"deepest one; the encoder's reductions are {list(encoder_reductions)}")
        self.low_index = lows[-1]
        high = encoder_channels[-1]
        self.cbr = ConvBNReLU(high, channels, 1)
        self.scale = nn.Sequential(AdaptiveAvgPool2d(1), nn.Conv2d(high, channels, 1, bias=False), nn.Sigmoid())
        self.out_channels = encoder_channels[self.low_index] + channels
        self.output_reduction = low_reduction

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low, high = features[self.low_index], features[-1]
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([low, x], dim=1)
