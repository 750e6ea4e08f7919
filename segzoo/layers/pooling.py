"""Adaptive average pooling that exports correctly at every input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AdaptiveAvgPool2d"]


def _bins(length: int, bins: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Start (inclusive) and end (exclusive) of each of ``bins`` windows over ``length``, as PyTorch's adaptive
    pooling places them: ``floor(i * L / n)`` to ``ceil((i + 1) * L / n)``."""
    i = torch.arange(bins, device=device)
    return (i * length) // bins, ((i + 1) * length + bins - 1) // bins


class AdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d(output_size)`` computed from an integral image: box sums gathered at window bounds
    that are tensors of the input size. ``nn.AdaptiveAvgPool2d``'s export decomposition fixes its gather indices at
    the traced size when that does not divide evenly (an ONNX graph of UPerNet's pyramid pooling failed in
    onnxruntime at another size: "GatherND ... invalid index"); this form holds at every size. Same values as
    ``nn.AdaptiveAvgPool2d`` up to float rounding."""

    def __init__(self, output_size: int | tuple[int, int]) -> None:
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_h, out_w = self.output_size
        if (out_h, out_w) == (1, 1):
            return x.mean(dim=(-2, -1), keepdim=True)
        height, width = x.shape[-2], x.shape[-1]
        # integral image with a leading zero row and column: box sum = S[y1, x1] - S[y0, x1] - S[y1, x0] + S[y0, x0]
        s = F.pad(x.float().cumsum(-2).cumsum(-1), (1, 0, 1, 0))
        y0, y1 = _bins(height, out_h, x.device)
        x0, x1 = _bins(width, out_w, x.device)

        def corner(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
            return s.index_select(-2, rows).index_select(-1, cols)

        total = corner(y1, x1) - corner(y0, x1) - corner(y1, x0) + corner(y0, x0)
        area = ((y1 - y0)[:, None] * (x1 - x0)[None, :]).to(total.dtype)
        return (total / area).to(x.dtype)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
