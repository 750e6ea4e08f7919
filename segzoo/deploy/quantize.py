"""INT8 on CPU: static post-training quantization of the exported ONNX graph with onnxruntime (QDQ format).

``q = segzoo.quantize(model, calibration_images)`` exports the fp32 graph (dynamic batch, height and width, checked
like ``segzoo.export``), calibrates activation ranges on the given uint8 images (normalised with the model's own
preprocessing) and writes weights as signed 8-bit per output channel, activations as unsigned 8-bit. The
segmentation head and everything after it (the resize to the input, the crop) stay in float: they are cheap and
carry the class scores. On CPUs without VNNI (AVX512-VNNI, AVX-VNNI or AMX) weights use 7 bits
(``reduce_range``), which avoids the saturation of u8 x s8 products there; ``weight_type="uint8"`` avoids it
too, on another kernel (see :func:`weight_types_for`; published weights carry a recipe for such CPUs). The result is a
:class:`QuantizedModel` with the model's ``predict`` contract (tiling and TTA included) and ``save(path)``; its
report gives the class-id agreement with the fp32 model on the calibration images and the measured speed of
INT8 against fp32 onnxruntime (a warning when INT8 is slower). Needs the ``export`` extra.

An architecture that exports at a fixed size (Swin-UNet; see ``Decoder.static_export_reason``) gives a fixed-size
INT8 graph: it calibrates on the centre window of that size of each image, and ``predict`` runs any image through
windows of that size (``QuantizedModel.fixed_size``, kept by ``save`` / ``load``).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segzoo.core.config import ModelMeta
from segzoo.core.device import INT8_VNNI_FLAGS, cpu_flags
from segzoo.core.errors import InvalidTypeError, InvalidValueError
from segzoo.core.io import atomic_path
from segzoo.core.outputs import class_ids
from segzoo.core.timing import median_ms
from segzoo.data.normalize import normalize
from segzoo.deploy.calibration import (
    ENTROPY_BINS,
    CalibrationReader,
    calibration_images,
    centre_window,
    float_tail,
    kl_range,
    module_nodes,
)
from segzoo.deploy.onnx import PARITY_ATOL, export_onnx
from segzoo.inference.int8_cpu import warn_if_saturating
from segzoo.inference.runtime import INPUT_KEY, META_KEY, REPORT_KEY, OnnxModel, add_metadata, describe
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["quantize", "QuantizedModel", "PreparedGraph", "cpu_int8_support", "quantize_to_file", "weight_types_for",
           "WEIGHT_TYPES"]


def cpu_int8_support(cpuinfo: str | None = None) -> dict[str, Any]:
    """What this CPU offers 8-bit inference: the VNNI / AMX flags found in ``/proc/cpuinfo`` (Linux), and
    whether 7-bit weights are advisable (no VNNI)."""
    flags = cpu_flags(cpuinfo)
    found = [f for f in INT8_VNNI_FLAGS if f in flags]
    return {"flags": found, "vnni": bool(found), "reduce_range": not found, "known": bool(flags)}


WEIGHT_TYPES = ("int8", "uint8")
# weights on CPUs without VNNI, chosen by measure (benchmarks/int8_weight_types.py): see weight_types_for
WEIGHT_TYPE_WITHOUT_VNNI = "int8"


def weight_types_for(cpu: dict[str, Any], weight_type: str | None, reduce_range: bool | None) -> tuple[str, bool]:
    """``(weight_type, reduce_range)`` on a CPU (:func:`cpu_int8_support`): what is given, else signed 8-bit
    weights with VNNI / AMX (their u8 x s8 products accumulate in 32 bits), and without VNNI
    ``WEIGHT_TYPE_WITHOUT_VNNI``: AVX2's u8 x s8 instruction adds pairs of products in 16 bits, which saturate
    unless signed weights keep 7 bits (``reduce_range``); unsigned weights take a path that does not saturate."""
    if weight_type is not None and weight_type not in WEIGHT_TYPES:
        raise InvalidValueError(f"weight_type must be one of {list(WEIGHT_TYPES)}, got {weight_type!r}")
    if weight_type is None:
        weight_type = "int8" if cpu["vnni"] else WEIGHT_TYPE_WITHOUT_VNNI
    if reduce_range and weight_type == "uint8":
        raise InvalidValueError("reduce_range applies to signed (int8) weights: unsigned weights need no 7-bit "
                                "range on any CPU")
    if reduce_range is None:
        reduce_range = weight_type == "int8" and not cpu["vnni"]
    return weight_type, bool(reduce_range)


class QuantizedModel(OnnxModel):
    """An INT8 onnxruntime session behind the model contract (see :class:`~segzoo.inference.runtime.OnnxModel`):
    ``q(x)`` logits of normalised float images, ``q.predict(images, tile=..., tta=...)`` class ids of uint8
    images, ``q.save(path)``, ``QuantizedModel.load``; ``q.report`` says how it was calibrated and measured."""

    def __init__(self, onnx_bytes: bytes, meta: ModelMeta, num_classes: int, report: dict[str, Any] | None = None,
                 input_layout: dict[str, Any] | None = None, source: str = "this INT8 model") -> None:
        super().__init__(onnx_bytes, meta, num_classes, report, input_layout, source)

    def save(self, path: str | Path, props: dict[str, str] | None = None) -> Path:
        """Write the INT8 ONNX file (classes, preprocessing, input layout and this report in its metadata),
        atomically; ``props`` adds metadata (the fp32 model's :func:`~segzoo.inference.runtime.describe`)."""
        import onnx

        proto = onnx.load_from_string(self.onnx_bytes)
        kept = {p.key: p.value for p in proto.metadata_props}
        del proto.metadata_props[:]
        values = {**kept, **(props or {}), META_KEY: json.dumps(self.meta.to_dict()),
                  INPUT_KEY: json.dumps(self.input_layout), REPORT_KEY: json.dumps(self.report)}
        for key, value in values.items():
            proto.metadata_props.add(key=key, value=value)
        path = Path(path)
        with atomic_path(path) as tmp:
            onnx.save(proto, str(tmp))
        return path

    @classmethod
    def load(cls, path: str | Path) -> QuantizedModel:
        """A file written by :meth:`save`; an fp32 segzoo ONNX file is an error that says to use ``OnnxModel``."""
        model = OnnxModel.load(path)
        if not model.report:
            raise InvalidValueError(f"{str(path)!r} is an fp32 segzoo ONNX export, not an INT8 file from segzoo "
                                    "quantize; load it with segzoo.inference.runtime.OnnxModel.load")
        return cls(model.onnx_bytes, model.meta, model.num_classes, model.report, model.input_layout, model.source)


def quantize(
    model: SegmentationModel,
    calibration: Iterable[Any],
    *,
    method: str = "minmax",
    per_channel: bool = True,
    reduce_range: bool | None = None,
    weight_type: str | None = None,
    example_size: tuple[int, int] = (256, 320),
    opset: int | None = None,
    keep_float: Sequence[str] = (),
    calibration_crop: int | None = None,
) -> QuantizedModel:
    """A static INT8 :class:`QuantizedModel` of ``model``; see the module docstring.

    ``calibration``: uint8 images, (C, H, W) tensors or (H, W, C) arrays (any sizes; 16 to 64 images like the
    deployment data, never the evaluation data). ``method``: how activation ranges are chosen (``minmax``,
    ``percentile``, ``entropy``). ``weight_type`` (``int8`` or ``uint8``) and
    ``reduce_range`` (7-bit signed weights) None follow the CPU: see :func:`weight_types_for`.
    ``keep_float``: module names (``model.named_modules()``; a name covers its children) whose layers stay in
    float besides the head, e.g. those :func:`sensitivity` finds. ``calibration_crop``: calibrate on each image's
    centre window of that side (edge-padded where smaller): ``percentile`` and ``entropy`` need images of one size.
    """
    import onnxruntime as ort

    if not isinstance(model, SegmentationModel):
        raise InvalidTypeError(f"quantize takes a segzoo SegmentationModel, got {type(model).__name__}")
    images = calibration_images(model, calibration, method, "quantize", calibration_crop)
    cpu = cpu_int8_support()
    weight_type, reduce_range = weight_types_for(cpu, weight_type, reduce_range)
    if cpu["known"]:
        warn_if_saturating({"weight_type": weight_type, "reduce_range": reduce_range}, "onnxruntime", "this INT8 model")
    model = model.eval()
    with tempfile.TemporaryDirectory(prefix="segzoo-quantize-") as tmp:
        graph = PreparedGraph(model, Path(tmp), example_size, opset)
        inputs = graph.inputs(model, images)
        onnx_bytes, kept_float = graph.int8(inputs, keep_float, method, per_channel, weight_type,
                                              reduce_range)
        session_fp32 = ort.InferenceSession(str(graph.fp32), providers=["CPUExecutionProvider"])
    fixed = {"fixed_size": None if graph.fixed_size is None else list(graph.fixed_size)}
    q = QuantizedModel(onnx_bytes, model.meta, model.num_classes, fixed)
    agree = []
    for x in inputs:
        with torch.inference_mode():
            expected = class_ids(model(torch.from_numpy(x)))
        agree.append(float((class_ids(q(torch.from_numpy(x))) == expected).float().mean()))
    fp32_ms, int8_ms = median_ms(lambda: session_fp32.run(None, {"x": inputs[0]})), median_ms(
        lambda: q.session.run(None, {"x": inputs[0]}))
    if int8_ms >= fp32_ms:
        warnings.warn(f"INT8 is not faster than fp32 here ({int8_ms:.1f} ms vs {fp32_ms:.1f} ms per "
                      f"{inputs[0].shape[2]}x{inputs[0].shape[3]} image in onnxruntime; CPU int8 flags: "
                      f"{cpu['flags'] or 'none'}): keep the float model", RuntimeWarning, stacklevel=2)
    q.report = {
        **fixed, "method": method, "per_channel": per_channel, "weight_type": weight_type, "reduce_range": reduce_range,
        "cpu_int8": cpu["flags"],
        "calibration_images": len(images), "calibration_crop": calibration_crop, "kept_float": len(kept_float),
        "kept_float_modules": list(keep_float),
        "fp32_export_checks": graph.export_report["checks"],
        "class_agreement_on_calibration": float(np.mean(agree)), "min_image_agreement": float(np.min(agree)),
        "onnxruntime_ms": {"fp32": round(fp32_ms, 2), "int8": round(int8_ms, 2)},
    }
    return q


class PreparedGraph:
    """A model's fp32 ONNX export (checked like ``segzoo.export``) and its optimised form, made once in
    ``directory``, from which INT8 graphs are calibrated (one per set of float-kept layers)."""

    def __init__(self, model: SegmentationModel, directory: Path, example_size: tuple[int, int],
                 opset: int | None) -> None:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.directory = directory
        self.fp32, self.prepared = directory / "fp32.onnx", directory / "prepared.onnx"
        self.export_report = export_onnx(model, self.fp32, dynamic=True, opset=opset, example_size=example_size,
                                         atol=PARITY_ATOL)
        self.fixed_size = None if self.export_report["dynamic"] else tuple(example_size)
        # shape inference and graph optimisation, as onnxruntime advises; symbolic shapes fail on dynamic H, W
        quant_pre_process(str(self.fp32), str(self.prepared), skip_symbolic_shape=True)
        self.description = describe(model)  # classes, preprocessing, config, source sha256
        self.float_tail = float_tail(self.prepared)  # the head and what follows it: float in every INT8 graph
        self._entropy: tuple[Any, dict[str, tuple[float, float]]] = (None, {})

    def inputs(self, model: SegmentationModel, images: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Normalised calibration arrays; a static graph calibrates on windows of its size, as it will predict."""
        inputs = [normalize(image.unsqueeze(0), model.meta.preprocessing).float() for image in images]
        if self.fixed_size is not None:
            inputs = [centre_window(x, self.fixed_size) for x in inputs]
        return [x.numpy() for x in inputs]

    def entropy_ranges(self, inputs: Sequence[np.ndarray]) -> dict[str, tuple[float, float]]:
        """Each activation's range by entropy calibration (:func:`kl_range` on onnxruntime's histograms of the
        inputs), computed once per set of inputs. onnxruntime's own entropy method is not used: quantize_static
        gives it 128 histogram bins for 128 quantized bins, one candidate range, so it equals minmax."""
        from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

        key = tuple((x.shape, float(x.sum())) for x in inputs)
        if self._entropy[0] != key:
            calibrator = create_calibrator(
                str(self.prepared), None, augmented_model_path=str(self.directory / "entropy.onnx"),
                calibrate_method=CalibrationMethod.Entropy, extra_options={"num_bins": ENTROPY_BINS})
            calibrator.collect_data(CalibrationReader(inputs, "x"))
            histograms = calibrator.collector.histogram_dict  # name -> (counts, edges, min, max, threshold)
            self._entropy = (key, {name: kl_range(h[0], h[1], float(h[2]), float(h[3]))
                                   for name, h in histograms.items()})
        return self._entropy[1]

    def int8(self, inputs: Sequence[np.ndarray], keep_float: Sequence[str], method: str, per_channel: bool,
             weight_type: str, reduce_range: bool) -> tuple[bytes, list[str]]:
        """The INT8 graph's bytes (metadata included) and the names of the nodes left in float."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        kept_float = list(self.float_tail)
        kept_modules = module_nodes(self.prepared, list(keep_float))
        kept_float += [n for nodes in kept_modules.values() for n in nodes if n not in kept_float]
        int8 = self.directory / "int8.onnx"
        extra: dict[str, Any] = {}
        if method == "entropy":  # ranges set by our entropy calibration; quantize_static's own pass is then moot
            extra["TensorQuantOverrides"] = {
                name: [{"rmin": np.array(lo, np.float32), "rmax": np.array(hi, np.float32)}]
                for name, (lo, hi) in self.entropy_ranges(inputs).items()}
        quantize_static(
            str(self.prepared), str(int8), CalibrationReader(inputs, "x"), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type={"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[weight_type], per_channel=per_channel,
            reduce_range=reduce_range, nodes_to_exclude=kept_float, extra_options=extra,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.MinMax}[method],
        )
        add_metadata(int8, self.description)
        return int8.read_bytes(), kept_float










def quantize_to_file(model: SegmentationModel, path: str | Path, calibration: Iterable[Any], **options: Any) -> dict:
    """:func:`quantize`, then :meth:`QuantizedModel.save` to ``path``; returns the report."""
    q = quantize(model, calibration, **options)
    q.save(path)
    return {"path": str(path), **q.report}

