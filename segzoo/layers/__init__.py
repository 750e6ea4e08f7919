"""Small building blocks shared by encoders, decoders and heads."""

from segzoo.layers.aspp import ASPP
from segzoo.layers.conv import ConvBNReLU, DoubleConv, SeparableConv2d
from segzoo.layers.heads import AuxHead, ClassificationHead, SegmentationHead

__all__ = [
    "ASPP",
    "AuxHead",
    "ClassificationHead",
    "ConvBNReLU",
    "DoubleConv",
    "SegmentationHead",
    "SeparableConv2d",
]
