"""Building blocks shared by encoders, decoders and heads: conv blocks, ASPP, heads, export-safe pooling.
May import: core.
"""

from segzoo.layers.aspp import ASPP
from segzoo.layers.conv import ConvBNReLU, DoubleConv, SeparableConv2d
from segzoo.layers.heads import AuxHead, ClassificationHead, SegmentationHead
from segzoo.layers.pooling import AdaptiveAvgPool2d

__all__ = [
    "ASPP",
    "AdaptiveAvgPool2d",
    "AuxHead",
    "ClassificationHead",
    "ConvBNReLU",
    "DoubleConv",
    "SegmentationHead",
    "SeparableConv2d",
]
