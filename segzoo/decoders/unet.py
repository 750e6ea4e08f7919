"""U-Net decoder (Ronneberger et al., 2015): upsample, concatenate the skip, two 3 x 3 convs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import register_decoder
from segzoo.decoders.base import Decoder
from segzoo.layers import DoubleConv

__all__ = ["UNetDecoder", "UNetBlock"]

UPSAMPLING_MODES = ("nearest", "bilinear", "transposed")


class UNetBlock(nn.Module):
    """Upsample by ``scale`` (interpolation or a transposed conv), concatenate the skip, DoubleConv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, scale: int, upsampling: str) -> None:
        super().__init__()
        self.scale = scale
        self.mode = upsampling
        if upsampling == "transposed":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=scale, stride=scale)
            in_channels = out_channels
        else:
            self.up = nn.Identity()
        self.conv = DoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "transposed":
            x = self.up(x)
        elif self.scale != 1:
            x = F.interpolate(
                x, scale_factor=self.scale, mode=self.mode, align_corners=False if self.mode == "bilinear" else None
            )
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


@register_decoder("unet")
class UNetDecoder(Decoder):
    """Skip connections at every scale of the encoder.

    One block per entry of ``decoder_channels``; blocks take the encoder's skips
    from deep to shallow, and blocks beyond the last skip only upsample by 2.
    ``upsampling``: ``"nearest"`` (as smp), ``"bilinear"`` or ``"transposed"``
    (a learned 2 x 2 transposed convolution, as the original U-Net).
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_reductions: Sequence[int],
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        upsampling: str = "nearest",
    ) -> None:
        super().__init__(encoder_channels, encoder_reductions)
        if upsampling not in UPSAMPLING_MODES:
            raise InvalidValueError(f"unet upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")
        if not decoder_channels:
            raise InvalidValueError("unet decoder_channels must not be empty")
        channels = list(encoder_channels)
        reductions = list(encoder_reductions)
        self.skip_indices: list[int | None] = []
        blocks = []
        in_ch, current = channels[-1], reductions[-1]
        skips = list(range(len(channels) - 2, -1, -1))  # deep to shallow
        for i, out_ch in enumerate(decoder_channels):
            if i < len(skips):
                idx = skips[i]
                scale, skip_ch = current // reductions[idx], channels[idx]
                if scale * reductions[idx] != current:
                    raise InvalidValueError(f"unet: encoder reductions {reductions} are not powers of two apart")
                self.skip_indices.append(idx)
            else:
                if current == 1:
                    raise InvalidValueError(
                        f"unet: {len(decoder_channels)} decoder_channels would upsample past the input "
                        f"resolution (encoder reductions {reductions}); use at most {i} entries"
                    )
                idx, scale, skip_ch = None, 2, 0
                self.skip_indices.append(None)
            blocks.append(UNetBlock(in_ch, skip_ch, int(out_ch), scale, upsampling))
            in_ch, current = int(out_ch), current // scale
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = in_ch
        self.output_reduction = current
        self.input_divisor = max(reductions)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for block, idx in zip(self.blocks, self.skip_indices):
            x = block(x, None if idx is None else features[idx])
        return x
