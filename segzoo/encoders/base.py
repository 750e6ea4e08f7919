"""The encoder contract every decoder relies on."""

from __future__ import annotations

import torch
from torch import nn

from segzoo.core.config import Preprocessing
from segzoo.core.errors import InvalidValueError

__all__ = ["Encoder", "OutputStrideError"]


class OutputStrideError(InvalidValueError):
    """The encoder cannot produce the requested output stride (it has no dilated form)."""


class Encoder(nn.Module):
    """A backbone returning a pyramid of feature maps.

    ``forward(x)`` takes an NCHW batch and returns a list of NCHW feature maps,
    shallow to deep. ``out_channels[i]`` and ``reductions[i]`` (input size /
    feature size) describe feature ``i``. ``input_divisor`` is what the input's
    height and width must be a multiple of for the reductions to be exact; the
    model pads to it. Decoders use nothing else about an encoder.

    ``preprocessing`` is the input normalisation the encoder's pretrained weights expect (read from the weights
    file's header, or timm's pretrained config), or None for fresh weights: a model built on this encoder
    normalises that way unless its caller says otherwise.
    """

    out_channels: tuple[int, ...]
    reductions: tuple[int, ...]
    input_divisor: int
    preprocessing: Preprocessing | None = None
    # the smallest input side a torch.export program of it holds: torch.export specialises a size that can reach 1
    # (e.g. a strided reduction of a small map), so encoders with such layers state where their sizes stay >= 2
    program_min_side: int = 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError
