"""Decoders, one module each, every one built from the encoder contract alone (channels and reductions).
May import: core, layers.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from segzoo.core.errors import InvalidTypeError
from segzoo.core.registry import DECODERS
from segzoo.decoders import deeplabv3, deeplabv3plus, fcn, lraspp, segformer, swin_unet, unet  # noqa: F401  (register)
from segzoo.decoders.base import Decoder

__all__ = ["Decoder", "build_decoder", "decoder_params"]


def decoder_params(decoder: str | type) -> dict[str, Any]:
    """The keyword parameters (with defaults) that a decoder (its registered name, or its class) accepts."""
    cls = DECODERS.get(decoder) if isinstance(decoder, str) else decoder
    sig = inspect.signature(cls)
    params = list(sig.parameters.values())[2:]  # after encoder_channels, encoder_reductions
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build_decoder(
    name: str, encoder_channels: Sequence[int], encoder_reductions: Sequence[int], params: Mapping[str, Any],
    cls: type | None = None,
) -> Decoder:
    """Build decoder ``name`` (``cls``: its class, already looked up); an unknown parameter is an error listing the
    accepted ones."""
    cls = cls if cls is not None else DECODERS.get(name)
    accepted = decoder_params(cls)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidTypeError(f"decoder {name!r} got unknown parameter(s) {unknown}; it accepts {sorted(accepted)}")
    decoder = cls(list(encoder_channels), list(encoder_reductions), **params)
    if not isinstance(decoder, Decoder):
        raise InvalidTypeError(f"decoder builder {name!r} returned {type(decoder).__name__}, expected a segzoo Decoder")
    return decoder
