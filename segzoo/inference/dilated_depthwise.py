"""Dilated depthwise convolutions as a sum of shifted, per-channel-scaled views of the input.

On CPU, oneDNN has no direct kernel for depthwise convolutions with large dilations (DeepLabV3+'s separable ASPP
uses rates 6, 12 and 18): PyTorch then runs them as one small GEMM per channel, many times slower than the same
convolution undilated (measured in docs/benchmarks.md). Written as ``k * k`` shifted multiply-adds, the same sum
runs at memory speed in either memory format, and a tap whose every read lands in the zero padding (a dilation
as large as the feature map) costs nothing. Whether that is faster depends on the CPU and on oneDNN's version, so
the fast path decides by measure (:func:`faster_as_tap_sums`).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import torch
from torch import nn

from segzoo.core.errors import InvalidValueError
from segzoo.core.timing import median_ms

__all__ = ["TapSumDepthwiseConv", "why_not_tap_sum", "faster_as_tap_sums", "use_tap_sums"]

# a rewrite is kept only where it measures clearly faster: run-to-run noise on a loaded CPU reaches ~20%
SPEED_MARGIN = 1.25
PROBE_CHANNELS = 256


def why_not_tap_sum(conv: nn.Module) -> str | None:
    """Why ``conv`` cannot be written as tap sums (None if it can): it must be a 2-d depthwise convolution (one
    filter per input channel), stride 1, dilated, with odd kernel sides, zero-padded to keep the input's size."""
    if type(conv) is not nn.Conv2d:
        return f"{type(conv).__name__} is not a torch.nn.Conv2d"
    if not conv.in_channels == conv.out_channels == conv.groups:
        return (f"it is not depthwise (in_channels {conv.in_channels}, out_channels {conv.out_channels}, "
                f"groups {conv.groups}; expected all equal)")
    if conv.stride != (1, 1):
        return f"stride {conv.stride} (expected (1, 1))"
    if conv.dilation == (1, 1):
        return "it is not dilated (dilation (1, 1)): oneDNN has a direct kernel for it"
    if any(k % 2 == 0 for k in conv.kernel_size):
        return f"kernel_size {conv.kernel_size} has an even side (expected odd sides: a centre tap)"
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return f"padding {conv.padding!r}, padding_mode {conv.padding_mode!r} (expected integer zero padding)"
    same = tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size))
    if conv.padding != same:
        return f"padding {conv.padding} does not keep the input's size (expected {same})"
    return None


class TapSumDepthwiseConv(nn.Module):
    """The eval-time form of a dilated depthwise ``nn.Conv2d`` (see :func:`why_not_tap_sum`): the same output,
    computed as one multiply-add per kernel tap over the part of the map that tap reads inside the image."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        reason = why_not_tap_sum(conv)
        if reason is not None:
            raise InvalidValueError(f"TapSumDepthwiseConv cannot replace this convolution: {reason}")
        self.weight = conv.weight
        self.bias = conv.bias
        self.dilation = conv.dilation
        self.padding = conv.padding

    def _taps(self, height: int, width: int) -> Iterator[tuple[int, int, int, int]]:
        """(row, column, vertical shift, horizontal shift) of every tap that reads inside an ``height x width``
        map, the centre tap (which covers all of it) first."""
        kh, kw = self.weight.shape[-2:]
        centre = (kh // 2, kw // 2)
        yield centre[0], centre[1], 0, 0
        for a in range(kh):
            for b in range(kw):
                dy, dx = a * self.dilation[0] - self.padding[0], b * self.dilation[1] - self.padding[1]
                if (a, b) != centre and abs(dy) < height and abs(dx) < width:
                    yield a, b, dy, dx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.weight.shape[0]:
            raise InvalidValueError(f"TapSumDepthwiseConv expects (N, {self.weight.shape[0]}, H, W) input, "
                                    f"got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        taps = self._taps(height, width)
        a, b, _, _ = next(taps)
        y = x * self.weight[:, 0, a, b].view(1, -1, 1, 1)  # keeps x's memory format
        if self.bias is not None:
            y += self.bias.view(1, -1, 1, 1)
        for a, b, dy, dx in taps:
            rows, cols = slice(max(0, -dy), min(height, height - dy)), slice(max(0, -dx), min(width, width - dx))
            shifted = x[:, :, rows.start + dy:rows.stop + dy, cols.start + dx:cols.stop + dx]
            y[:, :, rows, cols].addcmul_(shifted, self.weight[:, 0, a, b].view(1, -1, 1, 1))
        return y


@cache
def faster_as_tap_sums(kernel_size: tuple[int, int], dilation: tuple[int, int], channels_last: bool) -> bool:
    """Whether tap sums run a depthwise convolution of this kernel size and dilation clearly faster than PyTorch's
    own kernel on this CPU: both timed on a probe map larger than the kernel's reach, so the answer is about the
    kernels, not about taps skipped in the padding. Measured once per process (``model.predict`` optimises again
    whenever the weights change)."""
    padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel_size))
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
        conv = nn.Conv2d(PROBE_CHANNELS, PROBE_CHANNELS, kernel_size, padding=padding, dilation=dilation,
                         groups=PROBE_CHANNELS).eval()
        x = torch.randn(1, PROBE_CHANNELS, 2 * padding[0] + 16, 2 * padding[1] + 16)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    taps = TapSumDepthwiseConv(conv)
    with torch.inference_mode():
        own, summed = median_ms(lambda: conv(x), repeats=5), median_ms(lambda: taps(x), repeats=5)
    return summed * SPEED_MARGIN < own


def use_tap_sums(model: nn.Module, channels_last: bool) -> int:
    """Replace (in place) each dilated depthwise convolution of ``model`` that :func:`faster_as_tap_sums` finds
    faster by its :class:`TapSumDepthwiseConv`; each kernel size and dilation is measured once. Returns how many
    were replaced."""
    faster: dict[tuple, bool] = {}
    replaced = 0
    for name, module in list(model.named_modules()):
        if not name or why_not_tap_sum(module) is not None:
            continue
        key = (module.kernel_size, module.dilation)
        if key not in faster:
            faster[key] = faster_as_tap_sums(*key, channels_last=channels_last)
        if faster[key]:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, TapSumDepthwiseConv(module))
            replaced += 1
    return replaced
