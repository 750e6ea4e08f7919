"""UPerNet (Xiao et al., 2018): pyramid pooling on the deepest feature, FPN fusion of all levels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from segzoo import Decoder
from segzoo.layers import AdaptiveAvgPool2d, ConvBNReLU


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: pooled context at several scales, concatenated and fused. Pools with
    segzoo's exportable ``AdaptiveAvgPool2d`` (the same values), so that ONNX graphs hold at every size."""

    def __init__(self, in_channels: int, channels: int, scales: Sequence[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(AdaptiveAvgPool2d(s), ConvBNReLU(in_channels, channels, 1)) for s in scales
        )
        self.fuse = ConvBNReLU(in_channels + len(scales) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(s(x), size=size, mode="bilinear", align_corners=False) for s in self.stages]
        return self.fuse(torch.cat([x, *pooled], dim=1))


class UPerNetDecoder(Decoder):
    """PPM on the deepest feature, lateral 1x1 + top-down sum, 3x3 per level, concat at the finest level, fuse."""

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_reductions: Sequence[int],
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        num_levels: int = 4,
        feature_norms: bool = False,
    ) -> None:
        super().__init__(encoder_channels, encoder_reductions)
        if len(encoder_channels) < num_levels:
            raise ValueError(f"upernet uses {num_levels} features, the encoder gives {len(encoder_channels)}")
        self.first = len(encoder_channels) - num_levels
        chans = list(encoder_channels[self.first :])
        # transformers' UperNet normalises each backbone stage's output (LayerNorm over channels) before the head
        self.norms = nn.ModuleList(LayerNorm2d(c, eps=1e-6) for c in chans) if feature_norms else None
        self.ppm = PyramidPooling(chans[-1], channels, pool_scales)
        self.lateral = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in chans[:-1])
        self.fpn = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in chans[:-1])
        self.fuse = ConvBNReLU(num_levels * channels, channels, 3)
        self.out_channels = channels
        self.output_reduction = encoder_reductions[self.first]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        feats = features[self.first :]
        if self.norms is not None:
            feats = [norm(f) for norm, f in zip(self.norms, feats)]
        top = self.ppm(feats[-1])
        laterals = [lat(f) for lat, f in zip(self.lateral, feats[:-1])] + [top]
        for i in range(len(laterals) - 1, 0, -1):
            size = laterals[i - 1].shape[-2:]
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=size, mode="bilinear",
                                                              align_corners=False)
        outs = [conv(x) for conv, x in zip(self.fpn, laterals[:-1])] + [top]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs[1:]]
        return self.fuse(torch.cat(outs, dim=1))
