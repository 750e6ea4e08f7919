"""Swin-Unet decoder (Cao et al., 2021): Swin Transformer blocks with patch-expanding upsampling."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import register_decoder
from segzoo.decoders.base import Decoder

__all__ = ["SwinUNetDecoder", "PatchExpand"]


class PatchExpand(nn.Module):
    """Channels-last upsampling by ``scale``: a linear layer makes ``scale**2`` sub-pixels per token, then LayerNorm."""

    def __init__(self, dim: int, out_dim: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.out_dim = out_dim
        self.expand = nn.Linear(dim, scale * scale * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        s = self.scale
        x = self.expand(x).view(b, h, w, s, s, self.out_dim)
        x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, h * s, w * s, self.out_dim)
        return self.norm(x)


def _num_heads(dim: int, head_dim: int) -> int:
    """The largest head count <= dim / head_dim that divides dim."""
    heads = max(1, dim // head_dim)
    while dim % heads:
        heads -= 1
    return heads


class SwinStage(nn.Module):
    """Fuse the skip (concat + linear), then ``depth`` Swin blocks with alternating shifted windows."""

    def __init__(self, in_dim: int, skip_dim: int, depth: int, window_size: int, head_dim: int, mlp_ratio: float):
        super().__init__()
        from timm.models.swin_transformer import SwinTransformerBlock

        self.fuse = nn.Linear(in_dim + skip_dim, skip_dim)
        heads = _num_heads(skip_dim, head_dim)
        self.blocks = nn.Sequential(
            *[
                SwinTransformerBlock(
                    dim=skip_dim,
                    input_resolution=(window_size * 2, window_size * 2),
                    num_heads=heads,
                    window_size=window_size,
                    shift_size=0 if i % 2 == 0 else window_size // 2,
                    always_partition=True,
                    dynamic_mask=True,
                    mlp_ratio=mlp_ratio,
                )
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.fuse(torch.cat([x, skip], dim=-1)))


@register_decoder("swin_unet")
class SwinUNetDecoder(Decoder):
    """The symmetric Swin-Unet decoder on the deepest ``len(depths) + 1`` encoder features.

    Those features' reductions must double from one to the next (a Swin or other
    hierarchical encoder). Each stage expands the resolution by 2 (PatchExpand),
    fuses the skip and applies ``depths[i]`` Swin blocks; a final expansion by the
    shallowest reduction returns to the input resolution.
    """

    static_export_reason = (
        "its shifted windows pad each stage to the window size, and torch 2.15's shape solver did not finish "
        "tracing that for symbolic sizes in ten minutes"
    )

    def __init__(
        self,
        encoder_channels: Sequence[int],
        encoder_reductions: Sequence[int],
        depths: Sequence[int] = (2, 2, 2),
        window_size: int = 7,
        head_dim: int = 32,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__(encoder_channels, encoder_reductions)
        n = len(depths) + 1
        if len(encoder_channels) < n:
            raise InvalidValueError(
                f"swin_unet with {len(depths)} decoder stages needs {n} encoder features, "
                f"got reductions {list(encoder_reductions)}"
            )
        self.first = len(encoder_channels) - n
        channels = [int(c) for c in encoder_channels[self.first :]]
        reductions = [int(r) for r in encoder_reductions[self.first :]]
        if any(b != 2 * a for a, b in zip(reductions[:-1], reductions[1:])):
            raise InvalidValueError(
                f"swin_unet needs encoder features whose reductions double stage to stage, got {reductions} "
                f"(from {list(encoder_reductions)})"
            )
        if reductions[0] < 1 or 2 ** int(math.log2(reductions[0])) != reductions[0]:
            raise InvalidValueError(f"swin_unet: shallowest reduction must be a power of two, got {reductions[0]}")
        self.bottleneck_norm = nn.LayerNorm(channels[-1])
        self.expands = nn.ModuleList()
        self.stages = nn.ModuleList()
        in_dim = channels[-1]
        for depth, skip_dim in zip(depths, reversed(channels[:-1])):
            self.expands.append(PatchExpand(in_dim, in_dim // 2, scale=2))
            self.stages.append(SwinStage(in_dim // 2, skip_dim, int(depth), window_size, head_dim, mlp_ratio))
            in_dim = skip_dim
        self.final_norm = nn.LayerNorm(in_dim)
        self.final_expand = PatchExpand(in_dim, in_dim, scale=reductions[0])
        self.out_channels = in_dim
        self.output_reduction = 1
        self.input_divisor = reductions[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        feats = [f.permute(0, 2, 3, 1) for f in features[self.first :]]  # channels-last for the Swin blocks
        x = self.bottleneck_norm(feats[-1])
        for expand, stage, skip in zip(self.expands, self.stages, reversed(feats[:-1])):
            x = stage(expand(x), skip)
        x = self.final_expand(self.final_norm(x))
        return x.permute(0, 3, 1, 2)
