"""Encoders behind one contract (base.py): any timm ``features_only`` backbone, the classic U-Net ``plain``
encoder, SegFormer's Mix Transformer (``mit_b0`` ... ``mit_b5``), torchvision's MobileNetV3 with its segmentation
taps, plugins; weights.py reads encoder weights offline.
May import: core, layers.
"""

from __future__ import annotations

import torch

from segzoo.core.config import EncoderConfig
from segzoo.core.errors import InvalidTypeError, InvalidValueError
from segzoo.core.registry import ENCODERS
from segzoo.encoders import mit as _mit  # noqa: F401  (registers "mit_b0" ... "mit_b5")
from segzoo.encoders import plain as _plain  # noqa: F401  (registers "plain")
from segzoo.encoders import tv_mobilenetv3 as _tv_mobilenetv3  # noqa: F401  (registers "tv_mobilenet_v3_large")
from segzoo.encoders.base import Encoder, OutputStrideError
from segzoo.encoders.timm_encoder import TimmEncoder, TimmFallback

__all__ = ["Encoder", "OutputStrideError", "TimmEncoder", "build_encoder"]

ENCODERS.set_fallback(TimmFallback())


def build_encoder(config: EncoderConfig) -> Encoder:
    """Build the encoder named by ``config.name`` (registered, plugin or timm) and check its contract."""
    builder = ENCODERS.get(config.name)
    encoder = builder(config)
    if not isinstance(encoder, Encoder):
        raise InvalidTypeError(
            f"encoder builder for {config.name!r} returned {type(encoder).__name__}, expected a segzoo Encoder"
        )
    if len(encoder.out_channels) != len(encoder.reductions) or not encoder.out_channels:
        raise InvalidValueError(
            f"encoder {config.name!r} declares {len(encoder.out_channels)} channel counts "
            f"and {len(encoder.reductions)} reductions"
        )
    _check_reductions(encoder, config, ENCODERS.entry(config.name).source)
    return encoder


@torch.no_grad()
def _check_reductions(encoder: Encoder, config: EncoderConfig, source: str) -> None:
    """What every encoder (plugins included) must honour: the requested ``output_stride``, and declared
    ``reductions`` equal to the real ones, measured with one small forward pass."""
    what = f"encoder {config.name!r} (from {source})"
    if config.output_stride is not None and max(encoder.reductions) != config.output_stride:
        raise OutputStrideError(f"{what} was asked for output_stride={config.output_stride} but declares "
                                f"reductions {list(encoder.reductions)}")
    size = max(64, 2 * max(encoder.reductions))
    training = encoder.training
    encoder.eval()
    try:
        features = encoder(torch.zeros(1, config.in_channels, size, size))
    finally:
        encoder.train(training)
    actual = [size // f.shape[-1] for f in features]
    channels = [f.shape[1] for f in features]
    if actual != list(encoder.reductions) or channels != list(encoder.out_channels):
        raise InvalidValueError(
            f"{what} declares reductions {list(encoder.reductions)} and channels {list(encoder.out_channels)}, but "
            f"its features on a {size}x{size} input are reduced by {actual} with {channels} channels"
        )
