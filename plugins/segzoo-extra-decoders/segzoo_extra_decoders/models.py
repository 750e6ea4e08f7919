"""Named models of this plugin: functions returning a segzoo ModelConfig."""

from segzoo import EncoderConfig, ModelConfig


def fpn_r50() -> ModelConfig:
    """FPN (Panoptic-FPN semantic head) on ResNet-50, from the segzoo-extra-decoders plugin."""
    return ModelConfig(EncoderConfig("resnet50"), "fpn", 21)


def upernet_convnext_t() -> ModelConfig:
    """UPerNet on ConvNeXt-T, from the segzoo-extra-decoders plugin."""
    return ModelConfig(EncoderConfig("convnext_tiny"), "upernet", 150)
