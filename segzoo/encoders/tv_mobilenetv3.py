"""torchvision's MobileNetV3 (Howard et al., 2019) as its segmentation models use it: ``tv_mobilenet_v3_large``.

torchvision's LR-ASPP and DeepLabV3 on MobileNetV3 read the backbone at its own taps: the stem and the first
block of each strided stage (the "C" blocks), and the last layer, with the last stage dilated for stride 16. Their
stride-8 tap is the stage's first block, not its end, so no ``features_only`` network reproduces them; this
encoder is torchvision's own network with those taps, so that imported weights give torchvision's outputs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from segzoo.core.config import EncoderConfig
from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import register_encoder
from segzoo.encoders.base import Encoder, OutputStrideError
from segzoo.encoders.weights import load_encoder_file

__all__ = ["TorchvisionMobileNetV3"]


class TorchvisionMobileNetV3(Encoder):
    """``torchvision.models.mobilenet_v3_large(dilated=...).features``, returning the output of each tap."""

    def __init__(self, in_channels: int = 3, dilated: bool = True, depth: int | None = None) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v3_large

        features = mobilenet_v3_large(weights=None, dilated=dilated).features
        if in_channels != 3:
            stem = features[0][0]
            features[0][0] = nn.Conv2d(in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding,
                                       bias=False)
        taps = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)] + [len(features) - 1]
        taps = taps[:depth]
        self.features = features[: taps[-1] + 1]
        self.taps = tuple(taps)
        self.out_channels = tuple(int(features[i].out_channels) for i in taps)
        self.reductions = tuple(self._reduction(i) for i in taps)
        self.input_divisor = 1  # strided convolutions with padding: any size, as torchvision

    def _reduction(self, tap: int) -> int:
        strides = [m.stride[0] for m in self.features[: tap + 1].modules() if isinstance(m, nn.Conv2d)]
        return math.prod(strides)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


@register_encoder("tv_mobilenet_v3_large")
def tv_mobilenet_v3_large(config: EncoderConfig) -> TorchvisionMobileNetV3:
    """torchvision's MobileNetV3-Large with its segmentation taps (channels 16, 24, 40, 80, 160, 960); its natural
    stride 32, or 16 with the last stage dilated (torchvision's ``dilated=True``, what its segmentation models
    use)."""
    if config.params:
        raise InvalidValueError(f"tv_mobilenet_v3_large encoder takes no parameters, got {sorted(config.params)}")
    if config.output_stride not in (None, 16, 32):
        raise OutputStrideError(f"tv_mobilenet_v3_large encoder: output_stride={config.output_stride} is not "
                                "supported (16, with the last stage dilated, or 32)")
    if config.depth is not None and not 1 <= config.depth <= 6:
        raise InvalidValueError(f"tv_mobilenet_v3_large encoder: depth={config.depth} is outside its 1..6 taps")
    if config.weights == "imagenet":
        raise InvalidValueError("tv_mobilenet_v3_large encoder: no ImageNet weights are fetched; give a local file")
    encoder = TorchvisionMobileNetV3(config.in_channels, config.output_stride == 16, config.depth)
    if config.weights is not None:
        load_encoder_file(encoder, encoder, config.weights)
    return encoder
