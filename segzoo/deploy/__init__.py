"""Deployment: ONNX, ``torch.export`` and OpenVINO exports, each checked against PyTorch before the file is kept;
static INT8 for CPUs (onnxruntime or OpenVINO / NNCF); structured pruning (Torch-Pruning).
May import: core, data, layers, encoders, decoders, storage, inference, models, convert, api.
"""

from __future__ import annotations

from pathlib import Path

from segzoo.core.errors import InvalidValueError
from segzoo.deploy.fastest import export_fastest, quantize_fastest
from segzoo.deploy.onnx import ExportError, check_onnx, export_onnx, load_source
from segzoo.deploy.program import export_program
from segzoo.deploy.prune import prune
from segzoo.deploy.quantize import (
    QuantizedModel,
    cpu_int8_support,
    quantize,
    quantize_to_file,
)
from segzoo.inference.runtime import LoadedProgram, OnnxModel, OpenVinoModel, load_program
from segzoo.models.segmentation_model import SegmentationModel

__all__ = [
    "ExportError", "check_onnx", "export", "export_onnx", "export_program", "load_program", "load_source",
    "quantize", "quantize_to_file", "prune", "QuantizedModel", "OnnxModel", "OpenVinoModel", "LoadedProgram",
    "cpu_int8_support", "quantize_fastest", "export_fastest",
]

EXPORTERS = {".onnx": "ONNX (onnxruntime-checked)", ".pt2": "torch.export program",
             ".xml": "OpenVINO IR (+ .bin; the openvino extra)"}


def export(model: SegmentationModel, path: str | Path, *, dynamic: bool = True, opset: int | None = None,
           example_size: tuple[int, int] = (256, 320), uint8_input: bool = False) -> dict:
    """Export by the file's suffix: ``.onnx`` (:func:`export_onnx`), ``.pt2`` (:func:`export_program`) or ``.xml``
    (an OpenVINO IR, :func:`segzoo.deploy.openvino.export_openvino`).
    ``uint8_input``: the graph takes uint8 images 0..255 and normalises them itself."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        return export_onnx(model, path, dynamic=dynamic, opset=opset, example_size=example_size,
                           uint8_input=uint8_input)
    if suffix == ".pt2":
        if opset is not None:
            raise InvalidValueError("opset applies to ONNX files, not to a .pt2 torch.export program")
        return export_program(model, path, dynamic=dynamic, example_size=example_size, uint8_input=uint8_input)
    if suffix == ".xml":
        if opset is not None:
            raise InvalidValueError("opset applies to ONNX files, not to an OpenVINO IR")
        from segzoo.deploy.openvino import export_openvino

        return export_openvino(model, path, dynamic=dynamic, example_size=example_size, uint8_input=uint8_input)
    raise InvalidValueError(f"cannot tell the export format of {str(path)!r} from its suffix {suffix!r}; use one of "
                            f"{', '.join(f'{k} ({v})' for k, v in EXPORTERS.items())}")
