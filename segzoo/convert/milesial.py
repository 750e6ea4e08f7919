"""milesial/Pytorch-UNet checkpoints (``UNet(n_channels, n_classes, bilinear=False)``)."""

from __future__ import annotations

import re

import torch
from torch import nn

from segzoo.convert._mapping import Rule, load_converted, read_checkpoint, rename
from segzoo.core.config import ModelMeta
from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import register_converter
from segzoo.models.factory import apply_overrides, build_model, named_config
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["from_milesial"]

_DOUBLE = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1"}  # their DoubleConv indices -> ours


def _rules() -> list[Rule]:
    rules: list[Rule] = []
    for theirs, ours in _DOUBLE.items():
        rules.append((rf"^inc\.double_conv\.{theirs}\.", f"encoder.stages.0.{ours}."))
        rules.append((rf"^down(\d)\.maxpool_conv\.1\.double_conv\.{theirs}\.", rf"encoder.stages.\1.1.{ours}."))
        rules.append((rf"^up(\d)\.conv\.double_conv\.{theirs}\.", rf"decoder.blocks.UP\1.conv.{ours}."))
    rules += [(r"^up(\d)\.up\.", r"decoder.blocks.UP\1.up."), (r"^outc\.conv\.", "head.")]
    return rules


def _renumber_up_blocks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Their up1..up4 are our decoder blocks 0..3."""
    return {re.sub(r"blocks\.UP(\d)", lambda m: f"blocks.{int(m.group(1)) - 1}", k): v for k, v in state.items()}


def _swap_concat_order(state: dict[str, torch.Tensor]) -> None:
    """They concatenate [skip, upsampled], segzoo [upsampled, skip]: swap the input channels of each first conv."""
    for i in range(4):
        up = state.get(f"decoder.blocks.{i}.up.weight")
        key = f"decoder.blocks.{i}.conv.0.0.weight"
        if up is None or key not in state:
            continue
        up_channels = up.shape[1]  # ConvTranspose2d weight: (in, out, k, k)
        w = state[key]
        skip_channels = w.shape[1] - up_channels
        state[key] = torch.cat([w[:, skip_channels:], w[:, :skip_channels]], dim=1).contiguous()


@register_converter("milesial")
def from_milesial(model_or_checkpoint: nn.Module | dict | str) -> SegmentationModel:
    """An equivalent ``unet_carvana``-style segzoo model from a milesial U-Net model or checkpoint.

    Their ``mask_values`` entry (the mask value of each class) is kept in
    ``model.meta.class_names``. Only the ``bilinear=False`` variant (the published
    Carvana weights) is supported.
    """
    raw = read_checkpoint(model_or_checkpoint)
    mask_values = raw.pop("mask_values", None)
    state = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    if "outc.conv.weight" not in state:
        raise InvalidValueError("not a milesial/Pytorch-UNet state dict: no 'outc.conv.weight'")
    if "up1.up.weight" not in state:
        raise InvalidValueError("milesial U-Nets with bilinear=True are not supported; only bilinear=False checkpoints")
    num_classes = int(state["outc.conv.weight"].shape[0])
    in_channels = int(state["inc.double_conv.0.weight"].shape[1])
    config = apply_overrides(named_config("unet_carvana"), num_classes=num_classes, in_channels=in_channels)
    renamed = _renumber_up_blocks(rename(state, _rules(), "milesial UNet"))
    model = load_converted(build_model(config), renamed, "milesial UNet", fixups=[_swap_concat_order])
    names = [f"mask value {v}" for v in mask_values] if isinstance(mask_values, list) else None
    model.meta = ModelMeta(
        class_names=names if names and len(names) == num_classes else None,
        description="U-Net converted from a milesial/Pytorch-UNet checkpoint.",
    )
    model.meta.preprocessing.mean = (0.0,) * in_channels  # milesial feeds images scaled to [0, 1], unnormalised
    model.meta.preprocessing.std = (1.0,) * in_channels
    return model
