"""Which layers INT8 hurts most: one calibration per candidate group kept in float, ranked by the class-id agreement
with the float model it buys back on held-out images."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from segzoo.core.errors import InvalidValueError
from segzoo.core.outputs import class_ids
from segzoo.data.normalize import normalize
from segzoo.deploy.calibration import as_uint8_chw, calibration_images
from segzoo.deploy.quantize import PreparedGraph, QuantizedModel, cpu_int8_support, weight_types_for
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["layer_groups", "agreement", "sensitivity"]


def layer_groups(model: SegmentationModel, depth: int) -> list[str]:
    """The model's weighted layers (convolutions, linear layers) grouped by their module name's first ``depth``
    parts, in model order, the head left out (it is always float): the candidates of :func:`sensitivity`."""
    if depth < 1:
        raise InvalidValueError(f"depth must be at least 1, got {depth}")
    groups: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear) and name:
            group = ".".join(name.split(".")[:depth])
            if group != "head" and not group.startswith("head.") and group not in groups:
                groups.append(group)
    return groups


def agreement(q: Any, model: SegmentationModel, images: Sequence[Any]) -> float:
    """Share of pixels whose class id ``q`` (an INT8 model) predicts as the float ``model`` does, over ``images``
    (uint8; held-out images, neither the calibration nor the evaluation set)."""
    same = total = 0
    for i, image in enumerate(images):
        x = normalize(as_uint8_chw(image, i).unsqueeze(0), model.meta.preprocessing).float()
        with torch.inference_mode():
            expected = class_ids(model(x))
        same += int((class_ids(q(x)) == expected).sum())
        total += expected.numel()
    return same / total


def sensitivity(model: SegmentationModel, calibration: Sequence[Any], check: Sequence[Any], *,
                groups: Sequence[str] | None = None, depth: int = 3, method: str = "minmax",
                per_channel: bool = True, reduce_range: bool | None = None,
                example_size: tuple[int, int] = (256, 320)) -> dict[str, Any]:
    """Which layers INT8 hurts most: the class-id agreement with float on ``check`` images of the fully
    quantized model, then of one model per group with that group kept in float (``groups``, default
    :func:`layer_groups` at ``depth``); each group's gain is its agreement minus the baseline's. The other
    arguments are :func:`quantize`'s. Costs one calibration per group."""
    if not check:
        raise InvalidValueError("sensitivity needs check images (held out from calibration and evaluation)")
    candidates = list(groups) if groups is not None else layer_groups(model, depth)
    images = calibration_images(model, calibration, method, "sensitivity")
    weight_type, reduce_range = weight_types_for(cpu_int8_support(), None, reduce_range)
    model = model.eval()
    options = {"method": method, "per_channel": per_channel, "weight_type": weight_type, "reduce_range": reduce_range}
    rows = []
    with tempfile.TemporaryDirectory(prefix="segzoo-sensitivity-") as tmp:
        graph = PreparedGraph(model, Path(tmp), example_size, None)  # exported once for every trial
        inputs = graph.inputs(model, images)
        fixed = {"fixed_size": None if graph.fixed_size is None else list(graph.fixed_size)}

        def trial(keep: Sequence[str]) -> float:
            onnx_bytes, _ = graph.int8(inputs, keep, **options)
            return agreement(QuantizedModel(onnx_bytes, model.meta, model.num_classes, fixed), model, check)

        base = trial([])
        for group in candidates:
            value = trial([group])
            rows.append({"group": group, "agreement": round(value, 5), "gain": round(value - base, 5)})
    rows.sort(key=lambda r: -r["gain"])
    return {"baseline_agreement": round(base, 5), "check_images": len(check), "calibration_images": len(images),
            **options, "example_size": list(example_size), "groups": rows}
