"""SegFormer's all-MLP decoder (Xie et al., 2021): each scale projected to one width, upsampled, fused."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.core.registry import register_decoder
from segzoo.decoders.base import Decoder

__all__ = ["SegFormerDecoder", "FoldedSegFormerDecoder"]


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

    @torch.no_grad()
    def inference_form(self) -> FoldedSegFormerDecoder:
        """An equivalent eval-only decoder for the fast path (``segzoo.optimize``); see
        :class:`FoldedSegFormerDecoder`."""
        return FoldedSegFormerDecoder(self)


class FoldedSegFormerDecoder(nn.Module):
    """The SegFormer head with its linear layers folded together, for inference.

    Up to the ReLU everything is linear: each scale's projection, the fuse convolution over the concatenation and
    its (eval) BatchNorm. Bilinear upsampling acts on each channel alone and keeps constants, so it commutes with a
    per-pixel linear map. Each scale therefore gets one 1 x 1 convolution straight to the fused width, at its own
    resolution, and only those maps are upsampled and summed: the wide fuse convolution at 1/4 resolution over
    four times the width disappears. Same logits up to float rounding.
    """

    def __init__(self, decoder: SegFormerDecoder) -> None:
        super().__init__()
        bn = decoder.fuse[1]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fuse = decoder.fuse[0].weight.flatten(1)  # (C, C * n), chunks in deepest-first order
        n, width = len(decoder.projections), decoder.out_channels
        bias = bn.bias - scale * bn.running_mean
        self.convs = nn.ModuleList()
        for i, proj in enumerate(decoder.projections):
            part = fuse[:, (n - 1 - i) * width:(n - i) * width]
            conv = nn.Conv2d(proj.in_channels, width, 1, bias=i == 0)
            conv.weight.copy_((scale[:, None] * (part @ proj.weight.flatten(1)))[:, :, None, None])
            bias = bias + scale * (part @ proj.bias)
            self.convs.append(conv)
        self.convs[0].bias.copy_(bias)
        self.first, self.out_channels = decoder.first, decoder.out_channels
        self.output_reduction, self.input_divisor = decoder.output_reduction, decoder.input_divisor

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        used = features[self.first:]
        x = self.convs[0](used[0])
        for conv, feature in zip(self.convs[1:], used[1:]):
            x = x + F.interpolate(conv(feature), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return F.relu(x)
