"""Choosing the INT8 backend by measure on the CPU at hand: which of onnxruntime and OpenVINO is faster depends on
the CPU (on a VNNI / AMX Xeon OpenVINO INT8 ran 1.6-2.7x onnxruntime INT8 for the zoo's weights; on AVX2-only CPUs
onnxruntime INT8 was measured at only 1.05-1.1x its fp32), so instead of a rule per instruction set both are
quantized, each timed on the same input in its own fresh process (timed one after the other in one process,
runtimes change each other's speed), and the faster one is kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from segzoo.core.errors import InvalidValueError
from segzoo.core.extras import install_hint
from segzoo.core.timing import median_ms_in_own_process
from segzoo.models.segmentation_model import SegmentationModel
from segzoo.storage.manifest import INT8_BACKENDS

__all__ = ["quantize_fastest", "SUFFIXES"]

SUFFIXES = {"onnxruntime": ".onnx", "openvino": ".xml"}
LOADERS = {"onnxruntime": "segzoo.inference.runtime:OnnxModel.load",
           "openvino": "segzoo.inference.runtime:OpenVinoModel.load"}


def quantize_fastest(model: SegmentationModel, calibration: Iterable[Any], stem: str | Path, *,
                     options: Mapping[str, Mapping[str, Any]] | None = None,
                     example_size: tuple[int, int] = (256, 320), repeats: int = 10) -> dict[str, Any]:
    """INT8 by each installed backend, each timed at ``example_size`` (batch 1) in its own process; the faster one
    is kept as ``stem.onnx`` or ``stem.xml`` (+ ``.bin``), the other discarded. ``options``: per backend, keyword
    arguments of its quantizer (e.g. ``{"onnxruntime": {"method": "minmax", "keep_float": [...]}}``). Returns the
    kept model's report with ``backend_choice``: each backend's INT8 latency and the ratio."""
    from segzoo.deploy.quantize import quantize_to_file

    stem = Path(stem)
    if stem.suffix.lower() in SUFFIXES.values():
        raise InvalidValueError(f"the fastest backend decides the file's suffix: give a name without one, got "
                                f"{str(stem)!r}")
    options = {backend: dict(options.get(backend) or {}) for backend in INT8_BACKENDS} if options else {
        backend: {} for backend in INT8_BACKENDS}
    images = list(calibration)
    backends = [b for b in INT8_BACKENDS if b == "onnxruntime" or _openvino_installed()]
    stem.parent.mkdir(parents=True, exist_ok=True)
    shape = (1, model.in_channels, *example_size)
    with tempfile.TemporaryDirectory(dir=stem.parent, prefix=f".{stem.name}.") as tmp:
        reports, ms = {}, {}
        for backend in backends:
            path = Path(tmp) / f"int8{SUFFIXES[backend]}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # "not faster than fp32": judged below
                if backend == "onnxruntime":
                    reports[backend] = quantize_to_file(model, path, images, example_size=example_size,
                                                        **options[backend])
                else:
                    from segzoo.deploy.openvino import quantize_openvino

                    reports[backend] = quantize_openvino(model, images, path, example_size=example_size,
                                                         **options[backend])
            ms[backend] = round(median_ms_in_own_process(LOADERS[backend], [str(path)], shape, repeats), 2)
        chosen = min(ms, key=ms.get)
        source = Path(tmp) / f"int8{SUFFIXES[chosen]}"
        target = stem.with_name(stem.name + SUFFIXES[chosen])
        if chosen == "openvino":
            os.replace(source.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(source, target)
        shutil.rmtree(tmp, ignore_errors=True)
    choice = {"chosen": chosen, "int8_ms": ms, "example_size": list(example_size), "repeats": repeats,
              "timing": "each backend in its own process"}
    if len(ms) == 2:
        other = next(b for b in ms if b != chosen)
        choice["speedup_over_" + other] = round(ms[other] / ms[chosen], 2)
    else:
        choice["note"] = f"OpenVINO is not installed ({install_hint('openvino')}): onnxruntime only"
    return {**reports[chosen], "path": str(target), "backend": chosen, "backend_choice": choice}


def _openvino_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("openvino", "nncf"))
