"""INT8 on CPU: static post-training quantization of the exported ONNX graph with onnxruntime (QDQ format).

``segzoo.quantize(model, "model.int8.onnx", calibration_images)`` exports the fp32 graph (dynamic batch, height and
width, checked like ``segzoo.export``), calibrates activation ranges on the given images (normalised with the
model's own preprocessing), writes weights as signed 8-bit per output channel and activations as unsigned 8-bit,
then compares the INT8 graph's class ids with the fp32 PyTorch model on the calibration images and reports the
agreement. On CPUs without VNNI (AVX512-VNNI, AVX-VNNI or AMX), weights use 7 bits (``reduce_range``), which
avoids the saturation of u8 x s8 products there. Needs the ``export`` extra. The file is written atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from segzoo.data.normalize import normalize
from segzoo.deploy.onnx import PARITY_ATOL, export_onnx
from segzoo.errors import InvalidTypeError, InvalidValueError
from segzoo.models.segmentation_model import SegmentationModel
from segzoo.outputs import class_ids

__all__ = ["quantize_onnx", "cpu_int8_support", "CALIBRATION_METHODS"]

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_int8_support(cpuinfo: str | None = None) -> dict[str, Any]:
    """What this CPU offers 8-bit inference: the VNNI / AMX flags found in ``/proc/cpuinfo`` (Linux), and
    whether 7-bit weights are advisable (no VNNI)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    found = [f for f in _VNNI_FLAGS if f in flags]
    return {"flags": found, "vnni": bool(found), "reduce_range": not found, "known": bool(flags)}


def _as_uint8_chw(image: Any, index: int) -> torch.Tensor:
    """One calibration image as a uint8 (C, H, W) tensor: accepts (C, H, W) tensors and (H, W, C) arrays."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3:
            raise InvalidValueError(f"calibration image {index}: expected an (H, W, C) array, got shape {image.shape}")
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if not isinstance(image, torch.Tensor):
        raise InvalidTypeError(f"calibration image {index}: expected a uint8 tensor or array, got {type(image).__name__}")
    if image.dtype != torch.uint8 or image.ndim != 3:
        raise InvalidValueError(f"calibration image {index}: expected uint8 (C, H, W), got {image.dtype} "
                                f"{tuple(image.shape)}")
    return image


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over normalised images, one per call."""

    def __init__(self, inputs: Sequence[np.ndarray], name: str) -> None:
        self.inputs, self.name, self.i = inputs, name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.inputs):
            return None
        self.i += 1
        return {self.name: self.inputs[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def quantize_onnx(
    model: SegmentationModel,
    path: str | Path,
    calibration: Iterable[Any],
    *,
    method: str = "minmax",
    per_channel: bool = True,
    reduce_range: bool | None = None,
    example_size: tuple[int, int] = (256, 320),
    opset: int | None = None,
) -> dict[str, Any]:
    """Write a static INT8 ONNX model of ``model`` to ``path``; see the module docstring.

    ``calibration``: uint8 images, (C, H, W) tensors or (H, W, C) arrays (any sizes; 16 to 64 typical images of
    the deployment data). ``method``: how activation ranges are chosen (``minmax``, ``percentile``,
    ``entropy``). ``reduce_range`` None follows the CPU (7-bit weights without VNNI). Returns a report with the
    class-id agreement between the INT8 graph and the fp32 PyTorch model on the calibration images.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not isinstance(model, SegmentationModel):
        raise InvalidTypeError(f"quantize takes a segzoo SegmentationModel, got {type(model).__name__}")
    if method not in CALIBRATION_METHODS:
        raise InvalidValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    images = [_as_uint8_chw(image, i) for i, image in enumerate(calibration)]
    if not images:
        raise InvalidValueError("quantize needs at least one calibration image")
    bad = [i for i, image in enumerate(images) if image.shape[0] != model.in_channels]
    if bad:
        raise InvalidValueError(f"calibration image(s) {bad[:5]} have {images[bad[0]].shape[0]} channels, the "
                                f"model takes {model.in_channels}")
    cpu = cpu_int8_support()
    reduce_range = cpu["reduce_range"] if reduce_range is None else bool(reduce_range)
    model = model.eval()
    inputs = [normalize(image.unsqueeze(0), model.meta.preprocessing).float().numpy() for image in images]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export = export_onnx(model, fp32, dynamic=True, opset=opset, example_size=example_size, atol=PARITY_ATOL)
        prepared = Path(tmp) / "prepared.onnx"  # shape inference and graph optimisation, as onnxruntime advises
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)  # dynamic H, W defeat it
        int8 = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared), str(int8), _Reader(inputs, "x"), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
            reduce_range=reduce_range,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
        )
        session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
        agree = []
        for x in inputs:
            with torch.inference_mode():
                expected = class_ids(model(torch.from_numpy(x)))
            got = class_ids(torch.from_numpy(session.run(None, {"x": x})[0]))
            agree.append(float((got == expected).float().mean()))
        os.replace(int8, path)
    return {
        "path": str(path), "method": method, "per_channel": per_channel, "reduce_range": reduce_range,
        "cpu_int8": cpu["flags"], "calibration_images": len(images), "fp32_export_checks": export["checks"],
        "class_agreement_on_calibration": float(np.mean(agree)), "min_image_agreement": float(np.min(agree)),
    }
