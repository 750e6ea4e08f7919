"""The INT8 recipes of published weights: which calibration method and which float-kept layers each backend uses,
as ``benchmarks/int8_recipe.py`` chose them by measure and ``weights/manifest.json`` records them (key ``int8``).

A model gets its weights' recipe by the sha256 of the file it was loaded from, however it was named (``model.tag``,
a path to the same file, the Hub), so ``segzoo quantize unet_mnv2.aerial ...`` quantizes the way the Deploy table
measured it. Other weights have no recipe: the defaults apply.
"""

from __future__ import annotations

from typing import Any

from segzoo.core.errors import InvalidValueError
from segzoo.models.segmentation_model import SegmentationModel
from segzoo.storage.manifest import INT8_BACKENDS, read_manifest

__all__ = ["zoo_int8_recipe", "INT8_BACKENDS"]


def zoo_int8_recipe(model: SegmentationModel, backend: str) -> dict[str, Any] | None:
    """``{"method", "keep_float", "calibration_crop" (a window side or None), "weights"}`` for ``backend``
    (``onnxruntime`` or ``openvino``; OpenVINO's method is NNCF's, ``"nncf"``) when ``model``'s weights are a
    published file with a recorded recipe, else None."""
    if backend not in INT8_BACKENDS:
        raise InvalidValueError(f"INT8 backend must be one of {INT8_BACKENDS}, got {backend!r}")
    sha256 = (model.loaded_from or {}).get("sha256")
    for row in read_manifest() if sha256 else []:
        if row.get("sha256") == sha256 and backend in (row.get("int8") or {}):
            recipe = row["int8"][backend]
            return {"method": recipe["method"], "keep_float": list(recipe["keep_float"]),
                    "calibration_crop": recipe.get("calibration_crop"), "weights": f"{row['model']}.{row['tag']}"}
    return None
