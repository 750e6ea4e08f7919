"""OpenVINO, the second CPU backend: an IR (``model.xml`` + ``model.bin``) in fp32, or INT8 by NNCF's post-training
quantization, each checked against PyTorch before the files are kept.

The IR is converted from segzoo's checked ONNX export (dynamic batch, height and width), so it holds at every size
the ONNX graph holds; it is then compiled for the CPU and compared with the PyTorch model at the ONNX export's
check sizes (fp32: max abs logit difference <= 1e-3 and identical class ids). INT8 calibrates on uint8 images
normalised with the model's preprocessing (like ``segzoo.quantize``: images like the deployment data, never the
evaluation data), with NNCF's defaults (per-channel symmetric weights, bias correction) and the head kept in float
(as onnxruntime's INT8), and reports class-id agreement with fp32 and the latency of both. Where OpenVINO's INT8
kernels run without VNNI (AVX2), every layer's weights keep 7 bits (NNCF's overflow fix; see
:func:`overflow_fix_for`). The metadata of every
export (classes, colours, preprocessing, input layout, config, source sha256, the INT8 report) goes into the IR's
``rt_info``. Needs the ``openvino`` extra (openvino, nncf).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segzoo.core.device import onednn_int8_has_vnni
from segzoo.core.errors import InvalidValueError
from segzoo.core.extras import install_hint
from segzoo.core.io import atomic_paths
from segzoo.core.outputs import class_ids
from segzoo.core.timing import median_ms
from segzoo.data.normalize import normalize
from segzoo.deploy.onnx import PARITY_ATOL, check_parity, check_sizes, export_onnx
from segzoo.inference.int8_cpu import warn_if_saturating
from segzoo.inference.runtime import REPORT_KEY, compile_openvino, describe, set_openvino_metadata
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["export_openvino", "quantize_openvino", "overflow_fix_for", "OVERFLOW_FIXES"]

# NNCF's overflow fix: which layers' weights keep 7 bits so that AVX2's u8 x s8 instruction, which adds pairs of
# products in 16 bits, cannot saturate. NNCF's default is the first layer only, which is right with VNNI / AMX.
OVERFLOW_FIXES = {"enable": "ENABLE", "first_layer": "FIRST_LAYER", "disable": "DISABLE"}


def overflow_fix_for(overflow_fix: str | None = None, cpu: dict[str, Any] | None = None) -> str:
    """The overflow fix (a key of ``OVERFLOW_FIXES``) for INT8 OpenVINO on this CPU: the given one, else
    ``first_layer`` (NNCF's default) where OpenVINO's INT8 kernels use VNNI or AMX, and ``enable`` (7-bit weights in
    every layer) where they do not: no VNNI flag, or ``ONEDNN_MAX_CPU_ISA`` capping it away. ``cpu``:
    :func:`segzoo.deploy.quantize.cpu_int8_support` (default: this machine's)."""
    from segzoo.deploy.quantize import cpu_int8_support

    if overflow_fix is not None:
        if overflow_fix not in OVERFLOW_FIXES:
            raise InvalidValueError(f"overflow_fix must be one of {list(OVERFLOW_FIXES)}, got {overflow_fix!r}")
        return overflow_fix
    return "first_layer" if onednn_int8_has_vnni((cpu or cpu_int8_support())["vnni"]) else "enable"


def _openvino():
    try:
        import openvino
    except ImportError as exc:
        raise InvalidValueError(f"the OpenVINO backend needs openvino (and nncf for INT8): "
                                f"{install_hint('openvino')}") from exc
    return openvino


def _check_xml(path: Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".xml":
        raise InvalidValueError(f"an OpenVINO IR is written as NAME.xml (+ NAME.bin), got {str(path)!r}")
    return path


def _converted(model: SegmentationModel, example_size: tuple[int, int], dynamic: bool, uint8_input: bool,
               tmp: Path) -> tuple[Any, dict]:
    """The ONNX export (checked against PyTorch) converted to an OpenVINO model."""
    ov = _openvino()
    onnx_path = tmp / "model.onnx"
    report = export_onnx(model, onnx_path, dynamic=dynamic, example_size=example_size, uint8_input=uint8_input)
    return ov.convert_model(str(onnx_path)), report


def _save(ov_model: Any, path: Path) -> None:
    """Write ``path`` (.xml) and its .bin whole: both to temporary names, then renamed together."""
    ov = _openvino()
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}.") as tmp:
        staged = Path(tmp) / "model.xml"
        ov.save_model(ov_model, str(staged), compress_to_fp16=False)
        with atomic_paths([path, path.with_suffix(".bin")]) as (xml_tmp, bin_tmp):
            os.replace(staged, xml_tmp)
            os.replace(staged.with_suffix(".bin"), bin_tmp)


def _compile(ov_model: Any) -> Any:
    """Compiled in f32 (parity is checked against PyTorch's fp32; see ``compile_openvino``)."""
    _openvino()  # the clear error when it is missing
    return compile_openvino(ov_model, "f32")


def export_openvino(model: SegmentationModel, path: str | Path, *, dynamic: bool = True,
                    example_size: tuple[int, int] = (256, 320), uint8_input: bool = False,
                    atol: float = PARITY_ATOL) -> dict:
    """Export ``model`` to an fp32 OpenVINO IR at ``path`` (``.xml``), checked against PyTorch; returns a report."""
    path = _check_xml(path)
    model = model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="segzoo-openvino-") as tmp:
        ov_model, onnx_report = _converted(model, example_size, dynamic, uint8_input, Path(tmp))
        compiled = _compile(ov_model)
        sizes = check_sizes(model, example_size) if onnx_report["dynamic"] else [(1, *example_size)]
        checks = check_parity(lambda x: compiled(x.numpy())[0], model, sizes, atol, what="the OpenVINO model",
                              uint8_input=uint8_input)
        props = describe(model, uint8_input)
        if not onnx_report["dynamic"]:
            props[REPORT_KEY] = json.dumps({"fixed_size": list(example_size)})
        set_openvino_metadata(ov_model, props)
        _save(ov_model, path)
    return {"path": str(path), "format": "openvino", "dynamic": onnx_report["dynamic"], "uint8_input": uint8_input,
            "checks": checks}


def _ignored_nodes(ov_model: Any, onnx_path: Path, keep_float: Sequence[str]) -> list[str]:
    """The IR's operations NNCF must leave in float: the head and what follows it, and the weighted layers of the
    ``keep_float`` modules, found by the ONNX node names the conversion keeps (shape arithmetic it folded away is
    skipped; a weighted layer it lost is an error, so a kept module is never silently quantized)."""
    from segzoo.deploy.calibration import float_tail, module_nodes

    names = [op.get_friendly_name() for op in ov_model.get_ordered_ops()]

    def made_from(node: str) -> list[str]:  # the IR operations of an ONNX node: "N", "N/WithoutBiases", ...
        return [name for name in names if name == node or name.startswith(node + "/")]

    by_module = module_nodes(onnx_path, ["head", *keep_float])
    lost = {module: nodes for module, nodes in by_module.items() if not any(made_from(n) for n in nodes)}
    if lost:
        raise InvalidValueError(f"keep_float: the OpenVINO model has none of the layers of {sorted(lost)} "
                                f"(ONNX nodes {sorted(n for v in lost.values() for n in v)[:6]})")
    nodes = float_tail(onnx_path) + [n for v in by_module.values() for n in v]
    return list(dict.fromkeys(op for n in nodes for op in made_from(n)))


def quantize_openvino(model: SegmentationModel, calibration: Iterable[Any], path: str | Path, *,
                      example_size: tuple[int, int] = (256, 320), subset_size: int | None = None,
                      keep_float: Sequence[str] = (), overflow_fix: str | None = None) -> dict:
    """An INT8 OpenVINO IR of ``model`` at ``path`` (``.xml``), calibrated by NNCF on ``calibration`` (uint8
    images, (C, H, W) tensors or (H, W, C) arrays); returns the report written into the IR.

    As in :func:`segzoo.quantize`, the head and what follows it stay in float, and so do the layers of the
    ``keep_float`` modules (PyTorch module names; NNCF's ignored scope, by the ONNX node names that the IR keeps).
    ``overflow_fix``: which layers keep 7-bit weights (:func:`overflow_fix_for` decides by the CPU when None).
    """
    from segzoo.deploy.calibration import as_uint8_chw, centre_window

    path = _check_xml(path)
    try:
        import nncf
    except ImportError as exc:
        raise InvalidValueError(f"INT8 OpenVINO models need nncf: {install_hint('openvino')}") from exc
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    overflow_fix = overflow_fix_for(overflow_fix)
    warn_if_saturating({"backend": "openvino", "overflow_fix": overflow_fix}, "openvino", f"INT8 IR {str(path)!r}")
    images = [as_uint8_chw(image, i) for i, image in enumerate(calibration)]
    if not images:
        raise InvalidValueError("quantize needs at least one calibration image")
    model = model.eval()
    inputs = [normalize(image.unsqueeze(0), model.meta.preprocessing).float() for image in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="segzoo-openvino-") as tmp:
        fp32_model, onnx_report = _converted(model, example_size, True, False, Path(tmp))
        fixed = None if onnx_report["dynamic"] else tuple(example_size)
        if fixed is not None:
            inputs = [centre_window(x, fixed) for x in inputs]
        arrays = [x.numpy() for x in inputs]
        onnx_path = Path(tmp) / "model.onnx"
        ignored = _ignored_nodes(fp32_model, onnx_path, keep_float)
        advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix[OVERFLOW_FIXES[overflow_fix]])
        int8_model = nncf.quantize(fp32_model, nncf.Dataset(arrays), subset_size=subset_size or len(arrays),
                                   ignored_scope=nncf.IgnoredScope(names=ignored), advanced_parameters=advanced)
        fp32, int8 = _compile(fp32_model), _compile(int8_model)
        agree = []
        for x in arrays:
            agree.append(float((class_ids(torch.from_numpy(int8(x)[0])) ==
                                class_ids(torch.from_numpy(fp32(x)[0]))).float().mean()))
        report = {"fixed_size": None if fixed is None else list(fixed), "backend": "openvino",
                  "method": "nncf post-training (defaults)", "overflow_fix": overflow_fix,
                  "calibration_images": len(arrays),
                  "kept_float": len(ignored), "kept_float_modules": list(keep_float),
                  "fp32_export_checks": onnx_report["checks"],
                  "class_agreement_on_calibration": float(np.mean(agree)), "min_image_agreement": float(np.min(agree)),
                  "openvino_ms": {"fp32": round(median_ms(lambda: fp32(arrays[0])), 2),
                                  "int8": round(median_ms(lambda: int8(arrays[0])), 2)}}
        set_openvino_metadata(int8_model, {**describe(model), REPORT_KEY: json.dumps(report)})
        _save(int8_model, path)
    return {"path": str(path), **report}
