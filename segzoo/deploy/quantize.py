"""INT8 on CPU: static post-training quantization of the exported ONNX graph with onnxruntime (QDQ format).

``q = segzoo.quantize(model, calibration_images)`` exports the fp32 graph (dynamic batch, height and width, checked
like ``segzoo.export``), calibrates activation ranges on the given uint8 images (normalised with the model's own
preprocessing) and writes weights as signed 8-bit per output channel, activations as unsigned 8-bit. The
segmentation head and everything after it (the resize to the input, the crop) stay in float: they are cheap and
carry the class scores. On CPUs without VNNI (AVX512-VNNI, AVX-VNNI or AMX) weights use 7 bits
(``reduce_range``), which avoids the saturation of u8 x s8 products there. The result is a
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
import torch.nn.functional as F

from segzoo.core.config import ModelMeta
from segzoo.core.device import cpu_flags
from segzoo.core.errors import InvalidTypeError, InvalidValueError
from segzoo.core.io import atomic_path
from segzoo.core.outputs import class_ids
from segzoo.core.timing import median_ms
from segzoo.data.normalize import normalize
from segzoo.deploy.onnx import PARITY_ATOL, export_onnx
from segzoo.inference.runtime import INPUT_KEY, META_KEY, REPORT_KEY, OnnxModel, add_metadata, describe
from segzoo.inference.tiling import pad_to_at_least
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["quantize", "QuantizedModel", "cpu_int8_support", "sensitivity", "CALIBRATION_METHODS"]

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
HISTOGRAM_METHODS = ("percentile", "entropy")  # onnxruntime keeps every activation of every image for these
ENTROPY_BINS = 2048  # histogram bins of the entropy calibration (TensorRT's choice), over [-max |x|, max |x|]
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_int8_support(cpuinfo: str | None = None) -> dict[str, Any]:
    """What this CPU offers 8-bit inference: the VNNI / AMX flags found in ``/proc/cpuinfo`` (Linux), and
    whether 7-bit weights are advisable (no VNNI)."""
    flags = cpu_flags(cpuinfo)
    found = [f for f in _VNNI_FLAGS if f in flags]
    return {"flags": found, "vnni": bool(found), "reduce_range": not found, "known": bool(flags)}


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


def _as_uint8_chw(image: Any, index: int) -> torch.Tensor:
    """One calibration image as a uint8 (C, H, W) tensor: accepts (C, H, W) tensors and (H, W, C) arrays."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3:
            raise InvalidValueError(f"calibration image {index}: expected an (H, W, C) array, got shape {image.shape}")
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if not isinstance(image, torch.Tensor):
        raise InvalidTypeError(f"calibration image {index}: expected a uint8 tensor or array, "
                               f"got {type(image).__name__}")
    if image.dtype != torch.uint8 or image.ndim != 3:
        raise InvalidValueError(f"calibration image {index}: expected uint8 (C, H, W), got {image.dtype} "
                                f"{tuple(image.shape)}")
    return image


def _centre_crop(image: torch.Tensor, side: int) -> torch.Tensor:
    """The centre ``side`` x ``side`` window of a uint8 (C, H, W) image, edge pixels repeated where it is smaller."""
    pad_h, pad_w = max(0, side - image.shape[1]), max(0, side - image.shape[2])
    if pad_h or pad_w:
        image = F.pad(image.unsqueeze(0).float(), (0, pad_w, 0, pad_h), mode="replicate")[0].to(torch.uint8)
    top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
    return image[:, top:top + side, left:left + side].contiguous()


def _calibration_images(model: SegmentationModel, calibration: Iterable[Any], method: str,
                        what: str, crop: int | None = None) -> list[torch.Tensor]:
    """The calibration images as uint8 (C, H, W) tensors (their centre ``crop`` windows if given), after checking
    the method, the count, the channels and, for histogram methods, that they have one size."""
    if method not in CALIBRATION_METHODS:
        raise InvalidValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < 8):
        raise InvalidValueError(f"calibration_crop must be a window side of at least 8 pixels, got {crop!r}")
    images = [_as_uint8_chw(image, i) for i, image in enumerate(calibration)]
    if crop is not None:
        images = [_centre_crop(image, crop) for image in images]
    if not images:
        raise InvalidValueError(f"{what} needs at least one calibration image")
    bad = [i for i, image in enumerate(images) if image.shape[0] != model.in_channels]
    if bad:
        raise InvalidValueError(f"calibration image(s) {bad[:5]} have {images[bad[0]].shape[0]} channels, the "
                                f"model takes {model.in_channels}")
    sizes = sorted({tuple(image.shape[1:]) for image in images})
    if method in HISTOGRAM_METHODS and len(sizes) > 1:
        raise InvalidValueError(f"{method!r} calibration needs images of one size (onnxruntime stacks every "
                                f"image's activations), got sizes {sizes[:4]}{' ...' if len(sizes) > 4 else ''}: "
                                "pass calibration_crop (--crop) for windows of one size, as tiled prediction "
                                "sees them, or use 'minmax'")
    return images


def _centre_window(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The centre ``size`` window of a normalised ``(1, C, H, W)`` image, edge pixels repeated where it is smaller
    (as :func:`segzoo.inference.tiling.fixed_windows` pads at prediction)."""
    x = pad_to_at_least(x, size)
    top, left = (x.shape[-2] - size[0]) // 2, (x.shape[-1] - size[1]) // 2
    return x[..., top:top + size[0], left:left + size[1]].contiguous()


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


def _float_tail(path: Path) -> list[str]:
    """Names of the head's nodes and every node after it (resize to the input, crop): kept in float."""
    import onnx

    graph = onnx.load(str(path)).graph
    tensors: set[str] = set()
    names = []
    for node in graph.node:  # ONNX nodes are in topological order
        if any(i.startswith("head.") for i in node.input) or any(i in tensors for i in node.input):
            names.append(node.name)
            tensors.update(node.output)
    return names


def _module_nodes(path: Path, modules: Sequence[str]) -> dict[str, list[str]]:
    """For each PyTorch module name in ``modules``, the graph's nodes whose weights are that module's or its
    children's (exported initializers keep the state-dict names); a name that matches no node is an error listing
    names that do."""
    import onnx

    graph = onnx.load(str(path)).graph
    initializers = {t.name for t in graph.initializer}
    found: dict[str, list[str]] = {name: [] for name in modules}
    for node in graph.node:
        weights = [i for i in node.input if i in initializers]
        for name in modules:
            if any(w.startswith(name + ".") for w in weights):
                found[name].append(node.name)
    missing = [name for name, nodes in found.items() if not nodes]
    if missing:
        known = sorted({w.rsplit(".", 1)[0] for n in graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm",
                        "MatMul") for w in n.input if w in initializers})
        raise InvalidValueError(f"keep_float: {missing} name no weighted layer of the exported graph; modules with "
                                f"quantizable weights are e.g. {known[:8]} (any prefix of such a name works)")
    return found


def quantize(
    model: SegmentationModel,
    calibration: Iterable[Any],
    *,
    method: str = "minmax",
    per_channel: bool = True,
    reduce_range: bool | None = None,
    example_size: tuple[int, int] = (256, 320),
    opset: int | None = None,
    keep_float: Sequence[str] = (),
    calibration_crop: int | None = None,
) -> QuantizedModel:
    """A static INT8 :class:`QuantizedModel` of ``model``; see the module docstring.

    ``calibration``: uint8 images, (C, H, W) tensors or (H, W, C) arrays (any sizes; 16 to 64 images like the
    deployment data, never the evaluation data). ``method``: how activation ranges are chosen (``minmax``,
    ``percentile``, ``entropy``). ``reduce_range`` None follows the CPU (7-bit weights without VNNI).
    ``keep_float``: module names (``model.named_modules()``; a name covers its children) whose layers stay in
    float besides the head, e.g. those :func:`sensitivity` finds. ``calibration_crop``: calibrate on each image's
    centre window of that side (edge-padded where smaller): ``percentile`` and ``entropy`` need images of one size.
    """
    import onnxruntime as ort

    if not isinstance(model, SegmentationModel):
        raise InvalidTypeError(f"quantize takes a segzoo SegmentationModel, got {type(model).__name__}")
    images = _calibration_images(model, calibration, method, "quantize", calibration_crop)
    cpu = cpu_int8_support()
    reduce_range = cpu["reduce_range"] if reduce_range is None else bool(reduce_range)
    model = model.eval()
    with tempfile.TemporaryDirectory(prefix="segzoo-quantize-") as tmp:
        graph = _PreparedGraph(model, Path(tmp), example_size, opset)
        inputs = graph.inputs(model, images)
        onnx_bytes, kept_float = graph.int8(inputs, keep_float, method, per_channel, reduce_range)
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
        **fixed, "method": method, "per_channel": per_channel, "reduce_range": reduce_range, "cpu_int8": cpu["flags"],
        "calibration_images": len(images), "calibration_crop": calibration_crop, "kept_float": len(kept_float),
        "kept_float_modules": list(keep_float),
        "fp32_export_checks": graph.export_report["checks"],
        "class_agreement_on_calibration": float(np.mean(agree)), "min_image_agreement": float(np.min(agree)),
        "onnxruntime_ms": {"fp32": round(fp32_ms, 2), "int8": round(int8_ms, 2)},
    }
    return q


class _PreparedGraph:
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
        self.float_tail = _float_tail(self.prepared)  # the head and what follows it: float in every INT8 graph
        self._entropy: tuple[Any, dict[str, tuple[float, float]]] = (None, {})

    def inputs(self, model: SegmentationModel, images: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Normalised calibration arrays; a static graph calibrates on windows of its size, as it will predict."""
        inputs = [normalize(image.unsqueeze(0), model.meta.preprocessing).float() for image in images]
        if self.fixed_size is not None:
            inputs = [_centre_window(x, self.fixed_size) for x in inputs]
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
            calibrator.collect_data(_Reader(inputs, "x"))
            histograms = calibrator.collector.histogram_dict  # name -> (counts, edges, min, max, threshold)
            self._entropy = (key, {name: kl_range(h[0], h[1], float(h[2]), float(h[3]))
                                   for name, h in histograms.items()})
        return self._entropy[1]

    def int8(self, inputs: Sequence[np.ndarray], keep_float: Sequence[str], method: str, per_channel: bool,
             reduce_range: bool) -> tuple[bytes, list[str]]:
        """The INT8 graph's bytes (metadata included) and the names of the nodes left in float."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        kept_float = list(self.float_tail)
        kept_modules = _module_nodes(self.prepared, list(keep_float))
        kept_float += [n for nodes in kept_modules.values() for n in nodes if n not in kept_float]
        int8 = self.directory / "int8.onnx"
        extra: dict[str, Any] = {}
        if method == "entropy":  # ranges set by our entropy calibration; quantize_static's own pass is then moot
            extra["TensorQuantOverrides"] = {
                name: [{"rmin": np.array(lo, np.float32), "rmax": np.array(hi, np.float32)}]
                for name, (lo, hi) in self.entropy_ranges(inputs).items()}
        quantize_static(
            str(self.prepared), str(int8), _Reader(inputs, "x"), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
            reduce_range=reduce_range, nodes_to_exclude=kept_float, extra_options=extra,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.MinMax}[method],
        )
        add_metadata(int8, self.description)
        return int8.read_bytes(), kept_float


def kl_range(counts: np.ndarray, edges: np.ndarray, low: float, high: float,
             levels: int = 128) -> tuple[float, float]:
    """The clipping range of one activation by entropy calibration (TensorRT's recipe): of the windows
    ``[-t, t]`` of a histogram symmetric about zero, the one whose distribution, merged into ``levels`` bins and
    spread back, differs least (KL divergence) from the clipped original, outliers folded into the edge bins;
    then cut to the values seen (``low``, ``high``), and always containing 0."""
    counts = np.asarray(counts, dtype=np.float64)
    zero, half = counts.size // 2, levels // 2
    best, best_kl = (low, high), np.inf
    for i in range(half, zero + 1):
        start, end = zero - i, min(zero + i + 1, counts.size)
        window = counts[start:end]
        p = window.copy()
        p[0] += counts[:start].sum()
        p[-1] += counts[end:].sum()
        group = np.minimum(np.arange(window.size) * levels // window.size, levels - 1)
        nonzero = window > 0
        merged = np.bincount(group, weights=window, minlength=levels)
        spread = np.bincount(group, weights=nonzero, minlength=levels)
        q = np.where(nonzero, merged[group] / np.maximum(spread[group], 1), 0.0)
        if p.sum() == 0 or q.sum() == 0:
            continue
        p, q = p / p.sum(), q / q.sum()
        q = np.where((p > 0) & (q == 0), 1e-12, q)  # outlier mass where the clipped distribution has none
        kl = float(np.sum(p[p > 0] * np.log(p[p > 0] / q[p > 0])))
        if kl < best_kl:
            best, best_kl = (float(edges[start]), float(edges[end])), kl
    lo, hi = max(best[0], low), min(best[1], high)
    return min(lo, 0.0), max(hi, 0.0)


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
        x = normalize(_as_uint8_chw(image, i).unsqueeze(0), model.meta.preprocessing).float()
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
    images = _calibration_images(model, calibration, method, "sensitivity")
    reduce_range = cpu_int8_support()["reduce_range"] if reduce_range is None else bool(reduce_range)
    model = model.eval()
    options = {"method": method, "per_channel": per_channel, "reduce_range": reduce_range}
    rows = []
    with tempfile.TemporaryDirectory(prefix="segzoo-sensitivity-") as tmp:
        graph = _PreparedGraph(model, Path(tmp), example_size, None)  # exported once for every trial
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


def quantize_to_file(model: SegmentationModel, path: str | Path, calibration: Iterable[Any], **options: Any) -> dict:
    """:func:`quantize`, then :meth:`QuantizedModel.save` to ``path``; returns the report."""
    q = quantize(model, calibration, **options)
    q.save(path)
    return {"path": str(path), **q.report}

