"""SegFormer's all-MLP decoder (Xie et al., 2021): each scale projected to one width, upsampled, fused."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.core.registry import register_decoder
from segzoo.decoders.base import Decoder

__all__ = ["SegFormerDecoder"]


@register_decoder("segformer")
class SegFormerDecoder(Decoder):
    """The last (up to) four encoder features, each projected to ``channels`` by a 1 x 1 convolution (the
    reference's per-token linear layer), upsampled to the shallowest one's size (bilinear), concatenated deepest
    first, fused by a 1 x 1 convolution with BatchNorm and ReLU, then dropout. Built from the encoder contract
    alone, so it runs on any encoder, as smp's does.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_reductions: Sequence[int],
        channels: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(encoder_channels, encoder_reductions)
        self.first = max(len(encoder_channels) - 4, 0)  # the features it reads: the deepest four
        self.projections = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in encoder_channels[self.first:])
        n = len(self.projections)
        self.fuse = nn.Sequential(nn.Conv2d(channels * n, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.out_channels = channels
        self.output_reduction = encoder_reductions[self.first]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        used = features[self.first:]
        size = used[0].shape[-2:]
        maps = [proj(x) for proj, x in zip(self.projections, used)]
        maps = [maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps[1:]]
        return self.dropout(self.fuse(torch.cat(maps[::-1], dim=1)))
