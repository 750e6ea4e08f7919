"""Panoptic-FPN semantic segmentation head (Kirillov et al., 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segzoo import Decoder


def _conv_gn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.GroupNorm(32 if out_channels % 32 == 0 else 1, out_channels),
        nn.ReLU(inplace=True),
    )


class FPNDecoder(Decoder):
    """Top-down feature pyramid on the features at reductions >= ``min_reduction``; each
    pyramid level is brought to ``min_reduction`` by conv + x2 upsampling steps and summed."""

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_reductions: Sequence[int],
        pyramid_channels: int = 256,
        segmentation_channels: int = 128,
        min_reduction: int = 4,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(encoder_channels, encoder_reductions)
        self.indices = [i for i, r in enumerate(encoder_reductions) if r >= min_reduction]
        reductions = [encoder_reductions[i] for i in self.indices]
        if len(self.indices) < 2 or reductions[0] != min_reduction:
            raise ValueError(
                f"fpn needs encoder features from reduction {min_reduction} up, got {list(encoder_reductions)}"
            )
        self.lateral = nn.ModuleList(nn.Conv2d(encoder_channels[i], pyramid_channels, 1) for i in self.indices)
        self.levels = nn.ModuleList()
        for r in reductions:
            steps = max(1, (r // min_reduction).bit_length() - 1)  # log2(r / min_reduction), at least 1
            blocks = [_conv_gn_relu(pyramid_channels if k == 0 else segmentation_channels, segmentation_channels)
                      for k in range(steps)]
            self.levels.append(nn.ModuleList(blocks))
        self.dropout = nn.Dropout2d(dropout)
        self.out_channels = segmentation_channels
        self.output_reduction = min_reduction
        self.input_divisor = max(reductions)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        feats = [features[i] for i in self.indices]
        pyramid = [self.lateral[-1](feats[-1])]
        for lateral, feat in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            up = F.interpolate(pyramid[0], size=feat.shape[-2:], mode="nearest")
            pyramid.insert(0, up + lateral(feat))
        target = pyramid[0].shape[-2:]
        out = 0
        for level, blocks in zip(pyramid, self.levels):
            x = level
            for block in blocks:
                x = block(x)
                if x.shape[-2:] != target:
                    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            out = out + x
        return self.dropout(out)
