"""The INT8 recipes of published weights: which calibration method, which float-kept layers and (onnxruntime) which
weight types each backend uses, as ``benchmarks/int8_recipe.py`` chose them by measure and ``weights/manifest.json``
records them (key ``int8``).

A model gets its weights' recipe by the sha256 of the file it was loaded from, however it was named (``model.tag``,
a path to the same file, the Hub), so ``segzoo quantize unet_mnv2.aerial ...`` quantizes the way the Deploy table
measured it. onnxruntime on a CPU without VNNI gets the recipe chosen for 7-bit weights (``onnxruntime-no-vnni``)
where one is recorded. Other weights have no recipe: the defaults apply.
"""

from __future__ import annotations

from typing import Any

from segzoo.core.errors import InvalidValueError
from segzoo.models.segmentation_model import SegmentationModel
from segzoo.storage.manifest import INT8_BACKENDS, NO_VNNI, read_manifest

__all__ = ["zoo_int8_recipe", "INT8_BACKENDS"]


def zoo_int8_recipe(model: SegmentationModel, backend: str, vnni: bool = True) -> dict[str, Any] | None:
    """``{"method", "keep_float", "calibration_crop" (a window side or None), "weights", "key"}`` for ``backend``
    (``onnxruntime`` or ``openvino``; OpenVINO's method is NNCF's, ``"nncf"``) when ``model``'s weights are a
    published file with a recorded recipe, else None; onnxruntime's also ``weight_type`` and ``reduce_range`` where
    recorded. ``vnni`` False (the CPU has no VNNI): onnxruntime's recipe for such CPUs, where recorded."""
    if backend not in INT8_BACKENDS:
        raise InvalidValueError(f"INT8 backend must be one of {INT8_BACKENDS}, got {backend!r}")
    sha256 = (model.loaded_from or {}).get("sha256")
    keys = [NO_VNNI, backend] if backend == "onnxruntime" and not vnni else [backend]
    for row in read_manifest() if sha256 else []:
        recipes = row.get("int8") or {}
        key = next((k for k in keys if k in recipes), None)
        if row.get("sha256") == sha256 and key is not None:
            recipe = recipes[key]
            weights = {k: recipe[k] for k in ("weight_type", "reduce_range") if k in recipe}
            return {"method": recipe["method"], "keep_float": list(recipe["keep_float"]),
                    "calibration_crop": recipe.get("calibration_crop"), **weights,
                    "weights": f"{row['model']}.{row['tag']}", "key": key}
    return None
