"""The decoder contract."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from segzoo.core.errors import InvalidValueError

__all__ = ["Decoder"]


class Decoder(nn.Module):
    """Turns an encoder's feature pyramid into one feature map for the segmentation head.

    Built as ``Decoder(encoder_channels, encoder_reductions, **params)`` from the
    encoder contract alone. ``forward(features)`` returns an NCHW map with
    ``out_channels`` channels at ``output_reduction`` of the (padded) input;
    ``input_divisor`` is the multiple the input size must have for the decoder's
    own resampling to be exact (1: any size). ``default_output_stride`` is the
    encoder stride the design calls for (None: the encoder's natural stride).
    ``static_export_reason``: why exporters must fix the input size for this decoder
    (None: batch, height and width stay dynamic).
    """

    default_output_stride: ClassVar[int | None] = None
    static_export_reason: ClassVar[str | None] = None
    out_channels: int
    output_reduction: int
    input_divisor: int = 1

    def __init__(self, encoder_channels: Sequence[int], encoder_reductions: Sequence[int]) -> None:
        super().__init__()
        if len(encoder_channels) != len(encoder_reductions) or not encoder_channels:
            raise InvalidValueError(
                f"{type(self).__name__}: expected as many encoder channels as reductions, "
                f"got {list(encoder_channels)} and {list(encoder_reductions)}"
            )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError
