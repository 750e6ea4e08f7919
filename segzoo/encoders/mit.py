"""Mix Transformer (MiT, Xie et al., SegFormer, 2021): the hierarchical transformer encoder of SegFormer.

Each of the four stages embeds overlapping patches with a strided convolution, then runs transformer blocks
whose self-attention reads keys and values from a spatially reduced copy of the tokens (a strided convolution,
``sr_ratio``), and whose feed-forward mixes positions with a 3 x 3 depthwise convolution (Mix-FFN) instead of
position embeddings, so any input size works. Features at reductions 4, 8, 16 and 32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.core.config import EncoderConfig
from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import register_encoder
from segzoo.encoders.base import Encoder, OutputStrideError
from segzoo.encoders.weights import load_encoder_file

__all__ = ["MixTransformer", "MiTSpec", "MIT_SPECS"]


@dataclass(frozen=True)
class MiTSpec:
    """The widths and depths of one MiT variant (the paper's B0-B5)."""

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: int = 4


MIT_SPECS = {
    "mit_b0": MiTSpec((32, 64, 160, 256), (2, 2, 2, 2)),
    "mit_b1": MiTSpec((64, 128, 320, 512), (2, 2, 2, 2)),
    "mit_b2": MiTSpec((64, 128, 320, 512), (3, 4, 6, 3)),
    "mit_b3": MiTSpec((64, 128, 320, 512), (3, 4, 18, 3)),
    "mit_b4": MiTSpec((64, 128, 320, 512), (3, 8, 27, 3)),
    "mit_b5": MiTSpec((64, 128, 320, 512), (3, 6, 40, 3)),
}


def _to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, H*W, C) tokens -> (N, C, H, W) map."""
    return tokens.transpose(1, 2).unflatten(2, (height, width))


class PatchEmbed(nn.Module):
    """Overlapping patches: a k x k convolution of stride s and padding k // 2, then LayerNorm over channels."""

    def __init__(self, in_channels: int, dim: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size, stride, kernel_size // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[-2], x.shape[-1]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class EfficientSelfAttention(nn.Module):
    """Multi-head attention whose keys and values come from tokens reduced ``sr_ratio`` times per side."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, attn_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise InvalidValueError(f"MiT attention: width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.sr: nn.Conv2d | None = None
        self.sr_norm: nn.LayerNorm | None = None
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.sr_norm = nn.LayerNorm(dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # (N, heads, tokens, head_dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        kv = x
        if self.sr is not None:
            kv = self.sr_norm(self.sr(_to_map(x, height, width)).flatten(2).transpose(1, 2))
        out = F.scaled_dot_product_attention(self._heads(self.q(x)), self._heads(self.k(kv)), self._heads(self.v(kv)),
                                             dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj(out.transpose(1, 2).flatten(2))


class MixFFN(nn.Module):
    """Linear, 3 x 3 depthwise convolution (the positional information), GELU, linear."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = self.dwconv(_to_map(self.fc1(x), height, width)).flatten(2).transpose(1, 2)
        return self.drop(self.fc2(self.drop(self.act(x))))


class DropPath(nn.Module):
    """Stochastic depth: while training, drop a sample's residual branch with probability ``p``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class MiTBlock(nn.Module):
    """Pre-norm transformer block: efficient self-attention, then Mix-FFN, each with a residual."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.mlp(self.norm2(x), height, width))


class MiTStage(nn.Module):
    def __init__(self, in_channels: int, dim: int, depth: int, num_heads: int, sr_ratio: int, mlp_ratio: int,
                 first: bool, drop_paths: Sequence[float]) -> None:
        super().__init__()
        self.embed = PatchEmbed(in_channels, dim, 7 if first else 3, 4 if first else 2)
        self.blocks = nn.ModuleList(MiTBlock(dim, num_heads, sr_ratio, mlp_ratio, p) for p in drop_paths[:depth])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, height, width = self.embed(x)
        for block in self.blocks:
            x = block(x, height, width)
        return _to_map(self.norm(x), height, width)


class MixTransformer(Encoder):
    """The four MiT stages; ``drop_path_rate`` rises linearly over the blocks, as in the reference."""

    def __init__(self, spec: MiTSpec, in_channels: int = 3, drop_path_rate: float = 0.1, depth: int = 4) -> None:
        super().__init__()
        total = sum(spec.depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        stages, start, previous = [], 0, in_channels
        for i in range(depth):
            stages.append(MiTStage(previous, spec.embed_dims[i], spec.depths[i], spec.num_heads[i],
                                   spec.sr_ratios[i], spec.mlp_ratio, i == 0, rates[start:]))
            start, previous = start + spec.depths[i], spec.embed_dims[i]
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(spec.embed_dims[:depth])
        self.reductions = (4, 8, 16, 32)[:depth]
        self.input_divisor = 1  # overlapping patches with padding: any size, as the reference
        # the first stage's keys and values are reduced sr_ratio times from the 1/4 map: at least 2 of them per
        # side needs floor((side - 1) / 4) + 1 >= 2 * sr_ratio
        self.program_min_side = 4 * (2 * spec.sr_ratios[0] - 1) + 1 if depth else 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def _build(name: str, config: EncoderConfig) -> MixTransformer:
    unknown = sorted(set(config.params) - {"drop_path_rate"})
    if unknown:
        raise InvalidValueError(f"{name} encoder: unknown parameter(s) {unknown}; it accepts 'drop_path_rate'")
    depth = 4 if config.depth is None else config.depth
    if not 1 <= depth <= 4:
        raise InvalidValueError(f"{name} encoder: depth={config.depth} is outside its 1..4 stages")
    natural = (4, 8, 16, 32)[depth - 1]
    if config.output_stride not in (None, natural):
        raise OutputStrideError(f"{name} encoder has no dilated form: output_stride={config.output_stride} is not "
                                f"supported (its stride is {natural}; use output_stride=None)")
    if config.weights == "imagenet":
        raise InvalidValueError(f"{name} encoder: no ImageNet weights are fetched; give a local file (for example "
                                "an MiT checkpoint converted with segzoo.convert.from_transformers)")
    rate = config.params.get("drop_path_rate", 0.1)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise InvalidValueError(f"{name} encoder: drop_path_rate must be in [0, 1), got {rate!r}")
    encoder = MixTransformer(MIT_SPECS[name], config.in_channels, float(rate), depth)
    if config.weights is not None:
        load_encoder_file(encoder, encoder, config.weights)
    return encoder


def _register(name: str) -> None:
    spec = MIT_SPECS[name]

    def build(config: EncoderConfig) -> MixTransformer:
        return _build(name, config)

    build.__doc__ = (f"MiT-{name[-2:].upper()} (SegFormer's encoder): widths {list(spec.embed_dims)}, depths "
                     f"{list(spec.depths)}; ``params``: ``drop_path_rate`` (default 0.1).")
    register_encoder(name)(build)


for _name in MIT_SPECS:
    _register(_name)
