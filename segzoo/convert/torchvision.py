"""torchvision's segmentation models: ``fcn_resnet50/101``, ``deeplabv3_resnet50/101``,
``deeplabv3_mobilenet_v3_large`` (each with or without the aux classifier) and ``lraspp_mobilenet_v3_large``."""

from __future__ import annotations

from typing import Any

import torch
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
    "deeplabv3_mobilenet_v3_large": "deeplabv3_mnv3",
    "lraspp_mobilenet_v3_large": "lraspp_mnv3",
}

_RESNET: list[Rule] = [(r"^backbone\.", "encoder.model.")]
_MOBILENET: list[Rule] = [(r"^backbone\.", "encoder.features.")]
_AUX: list[Rule] = [
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
_LRASPP: list[Rule] = [
    (r"^classifier\.cbr\.", "decoder.cbr."),
    (r"^classifier\.scale\.", "decoder.scale."),
    (r"^classifier\.(low|high)_classifier\.", r"head.\1."),  # joined into one head by _join_classifiers
]
_AUX_TAP = {"mobilenet_v3_large": 2}  # the aux classifier's encoder feature: the 40-channel stride-8 tap


def _infer_arch(state: dict[str, Any]) -> str:
    """The torchvision architecture a state dict holds, from its keys; anything else is named as such."""
    if "backbone.conv1.weight" in state and "backbone.layer1.0.conv1.weight" in state:
        backbone = "resnet101" if "backbone.layer3.22.conv1.weight" in state else "resnet50"
    elif "backbone.16.0.weight" in state and state["backbone.16.0.weight"].shape[0] == 960:
        backbone = "mobilenet_v3_large"
    else:
        raise InvalidValueError(
            f"not a torchvision segmentation checkpoint segzoo knows: its backbone is neither a ResNet-50/101 nor "
            f"MobileNetV3-Large (first keys {list(state)[:3]}); known architectures: {sorted(ARCHS)}")
    if "classifier.cbr.0.weight" in state:
        head = "lraspp"
    elif any(k.startswith("classifier.0.convs.") for k in state):
        head = "deeplabv3"
    else:
        head = "fcn"
    arch = f"{head}_{backbone}"
    if arch not in ARCHS:
        raise InvalidValueError(f"torchvision {arch} is no torchvision architecture segzoo knows: {sorted(ARCHS)}")
    return arch


def _join_classifiers(state: dict[str, torch.Tensor]) -> None:
    """LR-ASPP's two 1 x 1 classifiers (on the low feature and on the gated high one) are one head here, on the
    decoder's concatenation of both maps: the weights side by side, the biases summed."""
    if "head.low.weight" in state:
        low_w, high_w = state.pop("head.low.weight"), state.pop("head.high.weight")
        low_b, high_b = state.pop("head.low.bias"), state.pop("head.high.bias")
        state["head.weight"] = torch.cat([low_w, high_w], dim=1)
        state["head.bias"] = low_b + high_b


@register_converter("torchvision")
def from_torchvision(model_or_checkpoint: nn.Module | dict | str, arch: str | None = None) -> SegmentationModel:
    """An equivalent segzoo model from a torchvision FCN / DeepLabV3 / LR-ASPP model, state dict or ``.pth`` file.

    ``arch`` (one of ``ARCHS``: ``fcn_resnet50``, ``lraspp_mobilenet_v3_large``, ...) is inferred from the
    weights when not given; weights of another architecture are an error listing the known ones. Class count and
    aux classifier follow the weights.
    """
    state = read_checkpoint(model_or_checkpoint)
    arch = arch or _infer_arch(state)
    if arch not in ARCHS:
        raise InvalidValueError(f"unknown torchvision architecture {arch!r}; supported: {sorted(ARCHS)}")
    head, _, backbone = arch.partition("_")
    classifier = "classifier.low_classifier.weight" if head == "lraspp" else "classifier.4.weight"
    if classifier not in state:
        raise InvalidValueError(f"not a torchvision {arch} state dict: no {classifier!r}")
    num_classes = int(state[classifier].shape[0])
    aux = AuxHeadConfig(feature_index=_AUX_TAP.get(backbone, -2)) if "aux_classifier.4.weight" in state else None
    config = apply_overrides(named_config(ARCHS[arch]), num_classes=num_classes, aux_head=aux)
    rules = (_MOBILENET if backbone.startswith("mobilenet") else _RESNET) + _AUX
    rules += {"lraspp": _LRASPP, "deeplabv3": _DEEPLAB, "fcn": _FCN}[head]
    renamed = rename(state, rules, f"torchvision {arch}")
    return load_converted(build_model(config), renamed, f"torchvision {arch}", fixups=(_join_classifiers,))
