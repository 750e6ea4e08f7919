"""torchvision ``fcn_resnet50/101`` and ``deeplabv3_resnet50/101`` (with or without the aux classifier)."""

from __future__ import annotations

from typing import Any

from torch import nn

from segzoo.convert._mapping import Rule, load_converted, read_checkpoint, rename
from segzoo.core.config import AuxHeadConfig
from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import register_converter
from segzoo.models.factory import apply_overrides, build_model, named_config
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["from_torchvision", "ARCHS"]

ARCHS = {
    "fcn_resnet50": "fcn_r50",
    "fcn_resnet101": "fcn_r101",
    "deeplabv3_resnet50": "deeplabv3_r50",
    "deeplabv3_resnet101": "deeplabv3_r101",
}

_COMMON: list[Rule] = [
    (r"^backbone\.", "encoder.model."),
    (r"^aux_classifier\.([01])\.", r"aux_head.0.\1."),
    (r"^aux_classifier\.4\.", "aux_head.2."),
]
_FCN: list[Rule] = [
    (r"^classifier\.([01])\.", r"decoder.conv.\1."),
    (r"^classifier\.4\.", "head."),
]
_DEEPLAB: list[Rule] = [
    (r"^classifier\.0\.convs\.4\.1\.", "decoder.aspp.branches.4.1.0."),  # image pooling: pool, conv, bn, relu
    (r"^classifier\.0\.convs\.4\.2\.", "decoder.aspp.branches.4.1.1."),
    (r"^classifier\.0\.convs\.(\d)\.", r"decoder.aspp.branches.\1."),
    (r"^classifier\.0\.project\.([01])\.", r"decoder.aspp.project.0.\1."),
    (r"^classifier\.1\.", "decoder.conv.0."),
    (r"^classifier\.2\.", "decoder.conv.1."),
    (r"^classifier\.4\.", "head."),
]


def _infer_arch(state: dict[str, Any]) -> str:
    head = "deeplabv3" if any(k.startswith("classifier.0.convs.") for k in state) else "fcn"
    depth = "resnet101" if "backbone.layer3.22.conv1.weight" in state else "resnet50"
    return f"{head}_{depth}"


@register_converter("torchvision")
def from_torchvision(model_or_checkpoint: nn.Module | dict | str, arch: str | None = None) -> SegmentationModel:
    """An equivalent segzoo model from a torchvision FCN / DeepLabV3 model, state dict or ``.pth`` file.

    ``arch`` (``fcn_resnet50``, ``deeplabv3_resnet101``, ...) is inferred from the
    weights when not given. Class count and aux classifier follow the weights.
    """
    state = read_checkpoint(model_or_checkpoint)
    arch = arch or _infer_arch(state)
    if arch not in ARCHS:
        raise InvalidValueError(f"unknown torchvision architecture {arch!r}; supported: {sorted(ARCHS)}")
    if "classifier.4.weight" not in state:
        raise InvalidValueError("not a torchvision FCN / DeepLabV3 state dict: no 'classifier.4.weight'")
    num_classes = int(state["classifier.4.weight"].shape[0])
    aux = AuxHeadConfig() if "aux_classifier.4.weight" in state else None
    config = apply_overrides(named_config(ARCHS[arch]), num_classes=num_classes, aux_head=aux)
    rules = _COMMON + (_DEEPLAB if arch.startswith("deeplabv3") else _FCN)
    renamed = rename(state, rules, f"torchvision {arch}")
    return load_converted(build_model(config), renamed, f"torchvision {arch}")
