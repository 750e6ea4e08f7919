"""The classic U-Net contracting path (Ronneberger et al., 2015) as an encoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from segzoo.core.config import EncoderConfig
from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import register_encoder
from segzoo.encoders.base import Encoder, OutputStrideError
from segzoo.encoders.weights import load_encoder_file
from segzoo.layers import DoubleConv

__all__ = ["PlainEncoder", "plain"]


class PlainEncoder(Encoder):
    """Double 3 x 3 conv stages, each after a 2 x 2 max-pool but the first.

    With ``widths=(64, 128, 256, 512, 1024)`` this is the contracting path of the
    original U-Net (and of milesial/Pytorch-UNet): features at reductions 1..16.
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (64, 128, 256, 512, 1024)) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or any(w < 1 for w in widths):
            raise InvalidValueError(f"plain encoder widths must be positive integers, got {widths!r}")
        stages: list[nn.Module] = [DoubleConv(in_channels, widths[0])]
        for prev, width in zip(widths[:-1], widths[1:]):
            stages.append(nn.Sequential(nn.MaxPool2d(2), DoubleConv(prev, width)))
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(widths)
        self.reductions = tuple(2**i for i in range(len(widths)))
        self.input_divisor = self.reductions[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


@register_encoder("plain")
def plain(config: EncoderConfig) -> PlainEncoder:
    """Classic U-Net encoder; ``params``: ``widths`` (default 64..1024)."""
    unknown = sorted(set(config.params) - {"widths"})
    if unknown:
        raise InvalidValueError(f"plain encoder: unknown parameter(s) {unknown}; it accepts 'widths'")
    if config.weights == "imagenet":
        raise InvalidValueError("plain encoder has no ImageNet weights; pass weights=None or a local file")
    widths = config.params.get("widths", (64, 128, 256, 512, 1024))
    if config.depth is not None:
        if config.depth > len(widths):
            raise InvalidValueError(f"plain encoder: depth={config.depth} exceeds its {len(widths)} stages")
        widths = widths[: config.depth]
    natural = 2 ** (len(widths) - 1)
    if config.output_stride not in (None, natural):
        raise OutputStrideError(
            f"plain encoder has no dilated stages: output_stride={config.output_stride} is not supported "
            f"(its stride is {natural}; use output_stride=None)"
        )
    encoder = PlainEncoder(config.in_channels, widths)
    if config.weights is not None:
        load_encoder_file(encoder, encoder, config.weights)
    return encoder
