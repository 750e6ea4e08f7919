"""Convolution blocks: conv + BatchNorm + ReLU, depthwise-separable conv, the U-Net double conv."""

from __future__ import annotations

from torch import nn

__all__ = ["ConvBNReLU", "SeparableConv2d", "DoubleConv"]


class SeparableConv2d(nn.Sequential):
    """Depthwise k x k convolution followed by a pointwise 1 x 1 convolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels, in_channels, kernel_size, padding=padding, dilation=dilation,
                groups=in_channels, bias=False,
            ),
            nn.Conv2d(in_channels, out_channels, 1, bias=bias),
        )


class ConvBNReLU(nn.Sequential):
    """Convolution (no bias) + BatchNorm + ReLU; ``separable`` uses :class:`SeparableConv2d`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        separable: bool = False,
    ) -> None:
        if separable and kernel_size > 1:
            conv: nn.Module = SeparableConv2d(in_channels, out_channels, kernel_size, dilation)
        else:
            padding = dilation * (kernel_size - 1) // 2
            conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)
        super().__init__(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class DoubleConv(nn.Sequential):
    """Two 3 x 3 ConvBNReLU blocks: the stage of the classic U-Net and of U-Net decoders."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None) -> None:
        mid = out_channels if mid_channels is None else mid_channels
        super().__init__(ConvBNReLU(in_channels, mid), ConvBNReLU(mid, out_channels))
