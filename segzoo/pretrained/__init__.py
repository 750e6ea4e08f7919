"""Weights: the self-describing safetensors format, save / load in every form, published weight specs."""

from segzoo.pretrained.load import from_pretrained
from segzoo.pretrained.save import save_pretrained
from segzoo.pretrained.specs import ChecksumError, WeightSpec

__all__ = ["from_pretrained", "save_pretrained", "WeightSpec", "ChecksumError"]
