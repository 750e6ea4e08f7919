"""segmentation_models_pytorch ``Unet``, ``DeepLabV3``, ``DeepLabV3Plus`` (ResNet and ``tu-`` timm encoders)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from segzoo.convert._mapping import Rule, load_converted, read_checkpoint, rename
from segzoo.core.config import ClassificationHeadConfig, EncoderConfig, ModelConfig
from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import register_converter
from segzoo.models.factory import build_model
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["from_smp"]

_ENCODER: list[Rule] = [(r"^encoder\.model\.", "encoder.model."), (r"^encoder\.", "encoder.model.")]
_HEADS: list[Rule] = [
    (r"^segmentation_head\.0\.", "head."),
    (r"^classification_head\.3\.", "classification_head.fc."),
]
_ASPP = [
    (r"convs\.4\.1\.", "branches.4.1.0."),
    (r"convs\.4\.2\.", "branches.4.1.1."),
    (r"convs\.(\d)\.", r"branches.\1."),
    (r"project\.([01])\.", r"project.0.\1."),
]
_RULES: dict[str, list[Rule]] = {
    "unet": [
        (r"^decoder\.blocks\.(\d+)\.conv1\.", r"decoder.blocks.\1.conv.0."),
        (r"^decoder\.blocks\.(\d+)\.conv2\.", r"decoder.blocks.\1.conv.1."),
    ],
    "deeplabv3": [(rf"^decoder\.aspp\.{p}", rf"decoder.aspp.{r}") for p, r in _ASPP]
    + [(r"^decoder\.conv\.", "decoder.conv.0."), (r"^decoder\.bn\.", "decoder.conv.1.")],
    "deeplabv3plus": [(rf"^decoder\.aspp\.0\.{p}", rf"decoder.aspp.0.{r}") for p, r in _ASPP]
    + [
        (r"^decoder\.aspp\.1\.", "decoder.aspp.1.0."),
        (r"^decoder\.aspp\.2\.", "decoder.aspp.1.1."),
        (r"^decoder\.block1\.", "decoder.low_level."),
        (r"^decoder\.block2\.0\.", "decoder.fuse.0."),
        (r"^decoder\.block2\.1\.", "decoder.fuse.1."),
    ],
}
_CLASS_TO_DECODER = {"Unet": "unet", "DeepLabV3": "deeplabv3", "DeepLabV3Plus": "deeplabv3plus"}


def _encoder(name: str, in_channels: int, depth: int, output_stride: int | None) -> EncoderConfig:
    """smp's ``tu-`` prefix marks timm encoders, which dilate the timm way; its own ResNets dilate uniformly."""
    is_timm = name.startswith("tu-")
    return EncoderConfig(
        name[3:] if is_timm else name,
        in_channels=in_channels,
        depth=None if depth == 5 else depth,  # smp's 5 = every stage
        output_stride=output_stride,
        uniform_dilation=not is_timm and output_stride not in (None, 32),
    )


def _config(kind: str, kw: Mapping[str, Any]) -> ModelConfig:
    get = kw.get
    aux = get("aux_params")
    cls_head = None
    if aux:
        cls_head = ClassificationHeadConfig(aux["classes"], aux.get("pooling", "avg"), aux.get("dropout") or 0.0)
        if aux.get("activation"):
            raise InvalidValueError("smp aux_params with an activation are not supported (segzoo heads return logits)")
    if get("activation"):
        raise InvalidValueError(f"smp activation={get('activation')!r} is not supported: segzoo models return logits")
    in_ch, classes, depth = get("in_channels", 3), get("classes", 1), get("encoder_depth", 5)
    if kind == "unet":
        if get("decoder_attention_type") or get("decoder_use_norm", "batchnorm") not in ("batchnorm", True):
            raise InvalidValueError("smp Unet with attention or without batch norm has no segzoo counterpart")
        return ModelConfig(
            _encoder(get("encoder_name", "resnet34"), in_ch, depth, None), "unet", classes,
            {"decoder_channels": tuple(get("decoder_channels", (256, 128, 64, 32, 16))),
             "upsampling": get("decoder_interpolation", "nearest")},
            head_kernel_size=3, classification_head=cls_head,
        )
    os_ = get("encoder_output_stride", 8 if kind == "deeplabv3" else 16)
    separable = get("decoder_aspp_separable", kind == "deeplabv3plus")
    if kind == "deeplabv3" and separable:
        raise InvalidValueError("smp DeepLabV3 with decoder_aspp_separable=True has no segzoo counterpart yet")
    if kind == "deeplabv3plus" and not separable:
        raise InvalidValueError("smp DeepLabV3Plus with decoder_aspp_separable=False has no segzoo counterpart yet")
    params = {
        "channels": get("decoder_channels", 256),
        "atrous_rates": tuple(get("decoder_atrous_rates", (12, 24, 36))),
        "separable": separable,
        "aspp_dropout": get("decoder_aspp_dropout", 0.5),
    }
    if kind == "deeplabv3plus":
        params["align_corners"] = True  # smp upsamples ASPP output and logits with align_corners=True
    return ModelConfig(
        _encoder(get("encoder_name", "resnet34"), in_ch, depth, os_), kind, classes, params,
        classification_head=cls_head, align_corners=True,
    )


@register_converter("smp")
def from_smp(model_or_checkpoint: nn.Module | dict | str, arch: Mapping[str, Any] | None = None) -> SegmentationModel:
    """An equivalent segzoo model from an smp model (or its state dict / checkpoint with ``arch=``).

    ``arch`` is smp's own constructor configuration plus ``"arch"``: e.g.
    ``{"arch": "Unet", "encoder_name": "resnet34", "classes": 2}`` (an smp model
    object carries it; for a bare state dict it must be given).
    """
    if isinstance(model_or_checkpoint, nn.Module):
        kw = dict(getattr(model_or_checkpoint, "_hub_mixin_config", None) or {})
        kw.setdefault("arch", type(model_or_checkpoint).__name__)
        if arch:
            kw.update(arch)
    elif arch is None:
        raise InvalidValueError(
            "an smp state dict does not say its architecture: pass arch={'arch': 'Unet', 'encoder_name': ..., ...}"
        )
    else:
        kw = dict(arch)
    kind = _CLASS_TO_DECODER.get(kw.get("arch", ""))
    if kind is None:
        raise InvalidValueError(
            f"unsupported smp architecture {kw.get('arch')!r};"
            f" supported: {sorted(_CLASS_TO_DECODER)}"
        )
    state = read_checkpoint(model_or_checkpoint)
    config = _config(kind, kw)
    source = f"smp {kw['arch']}({kw.get('encoder_name')})"
    rules = _RULES[kind] + _HEADS + _ENCODER  # decoder rules first: "encoder." would match too early otherwise
    return load_converted(build_model(config), rename(state, rules, source), source)
