"""Encoders: any timm ``features_only`` backbone, the classic U-Net ``plain`` encoder and plugins."""

from __future__ import annotations

from segzoo.config import EncoderConfig
from segzoo.encoders import plain as _plain  # noqa: F401  (registers "plain")
from segzoo.encoders.base import Encoder, OutputStrideError
from segzoo.encoders.timm_encoder import TimmEncoder
from segzoo.registry import ENCODERS

__all__ = ["Encoder", "OutputStrideError", "TimmEncoder", "build_encoder"]


def build_encoder(config: EncoderConfig) -> Encoder:
    """Build the encoder named by ``config.name`` (registered, plugin or timm) and check its contract."""
    builder = ENCODERS.get(config.name)
    encoder = builder(config)
    if not isinstance(encoder, Encoder):
        raise TypeError(
            f"encoder builder for {config.name!r} returned {type(encoder).__name__}, expected a segzoo Encoder"
        )
    if len(encoder.out_channels) != len(encoder.reductions) or not encoder.out_channels:
        raise ValueError(
            f"encoder {config.name!r} declares {len(encoder.out_channels)} channel counts "
            f"and {len(encoder.reductions)} reductions"
        )
    return encoder
