"""Decoders, one module each; every one is built from the encoder contract alone."""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

from segzoo.decoders import deeplabv3, deeplabv3plus, fcn, swin_unet, unet  # noqa: F401  (register)
from segzoo.decoders.base import Decoder
from segzoo.errors import InvalidTypeError
from segzoo.registry import DECODERS

__all__ = ["Decoder", "build_decoder", "decoder_params"]


def decoder_params(name: str) -> dict[str, Any]:
    """The keyword parameters (with defaults) that decoder ``name`` accepts."""
    cls = DECODERS.get(name)
    sig = inspect.signature(cls)
    params = list(sig.parameters.values())[2:]  # after encoder_channels, encoder_reductions
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_decoder(
    name: str, encoder_channels: Sequence[int], encoder_reductions: Sequence[int], params: Mapping[str, Any]
) -> Decoder:
    """Build decoder ``name``; an unknown parameter is an error listing the accepted ones."""
    accepted = decoder_params(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidTypeError(f"decoder {name!r} got unknown parameter(s) {unknown}; it accepts {sorted(accepted)}")
    decoder = DECODERS.get(name)(list(encoder_channels), list(encoder_reductions), **params)
    if not isinstance(decoder, Decoder):
        raise InvalidTypeError(f"decoder builder {name!r} returned {type(decoder).__name__}, expected a segzoo Decoder")
    return decoder
