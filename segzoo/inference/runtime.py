"""Exported files that describe themselves, and running them.

Every file segzoo exports (fp32 ONNX, INT8 ONNX, ``.pt2``) carries what a user needs to feed it: class names and
colours, the preprocessing (mean, std, input range), the input layout (NCHW, float normalised or uint8 0..255),
the model config, the segzoo version and the sha256 of the weights file it was exported from. In ONNX files this
is ``metadata_props``; in ``.pt2`` archives an extra file. :class:`OnnxModel` runs any segzoo ``.onnx`` behind the
model contract (``q(x)`` logits of normalised float images, ``q.predict(uint8_images, tile=...)``), so that
``segzoo predict`` / ``eval`` take fp32 and INT8 files alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segzoo._version import __version__
from segzoo.core.config import ModelMeta, Preprocessing
from segzoo.core.errors import InvalidValueError, MissingFileError
from segzoo.core.extras import install_hint
from segzoo.core.io import parse_json
from segzoo.core.outputs import class_ids
from segzoo.data.normalize import normalize, scale_shift
from segzoo.inference.class_id_graphs import onnx_class_id_graph, openvino_class_id_model
from segzoo.inference.description import (
    CONFIG_KEY,
    INPUT_FLOAT,
    INPUT_KEY,
    INPUT_UINT8,
    KEYS,
    META_KEY,
    REPORT_KEY,
    SOURCE_KEY,
    VERSION_KEY,
    GraphFacts,
    read_description,
    read_limits,
)
from segzoo.inference.int8_cpu import warn_if_saturating

__all__ = [  # the metadata keys and read_description live in segzoo.inference.description, re-exported here
    "ExportedModel", "OnnxModel", "OpenVinoModel", "set_openvino_metadata", "LoadedProgram", "load_program",
    "Uint8Input", "describe", "read_description", "INPUT_FLOAT", "INPUT_UINT8", "META_KEY", "INPUT_KEY",
    "CONFIG_KEY", "VERSION_KEY", "SOURCE_KEY", "REPORT_KEY", "LIMITS_FILE", "META_FILE",
]


LIMITS_FILE = "segzoo_limits.json"  # inside a .pt2 archive: the input sizes the program accepts
META_FILE = "segzoo_meta.json"  # inside a .pt2 archive: the metadata_props of an ONNX export, as JSON


def describe(model: Any, uint8_input: bool = False) -> dict[str, str]:
    """The metadata an export of ``model`` (a SegmentationModel) carries, as string key/values."""
    props = {
        META_KEY: json.dumps(model.meta.to_dict()),
        INPUT_KEY: json.dumps(INPUT_UINT8 if uint8_input else INPUT_FLOAT),
        CONFIG_KEY: model.config.to_json(),
        VERSION_KEY: __version__,
    }
    if getattr(model, "loaded_from", None):
        props[SOURCE_KEY] = json.dumps(model.loaded_from)
    return props


class Uint8Input(torch.nn.Module):
    """``model`` behind a uint8 input: ``(N, C, H, W)`` 0..255 normalised inside the graph with ``preprocessing``
    (the form mobile and browser runtimes want)."""

    def __init__(self, model: torch.nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.model = model
        scale, shift = scale_shift(preprocessing, len(preprocessing.mean))
        self.register_buffer("scale", torch.tensor(scale).view(1, -1, 1, 1))
        self.register_buffer("shift", torch.tensor(shift).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.float() * self.scale + self.shift)


def denormalise(x: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """The uint8 image a normalised float batch came from (rounded; views that tiling interpolated lose at most
    half a grey level)."""
    lo, hi = pre.input_range
    mean = torch.tensor(pre.mean).view(1, -1, 1, 1)
    std = torch.tensor(pre.std).view(1, -1, 1, 1)
    return ((x * std + mean - lo) * (255.0 / (hi - lo))).round_().clamp_(0, 255).to(torch.uint8)


class ExportedModel:
    """What every runtime of an exported file shares: the model contract over a compiled graph. ``m(x)`` logits
    ``(N, K, H, W)`` of a normalised float batch (CPU), ``m.predict(images, tile=..., tta=...)`` class ids of
    uint8 images, ``m.meta`` (classes, preprocessing), ``m.num_classes``, ``m.fixed_size``, ``m.report``. A graph
    with a uint8 input is fed the uint8 image the normalised batch came from. Subclasses run one array."""

    def __init__(self, meta: ModelMeta, num_classes: int, report: dict[str, Any] | None,
                 input_layout: dict[str, Any] | None, source: str) -> None:
        self.meta = meta
        self.num_classes = num_classes
        self.report = dict(report or {})
        self.input_layout = dict(input_layout or INPUT_FLOAT)
        self.source = source

    def _run(self, array: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def uint8_input(self) -> bool:
        return self.input_layout.get("dtype") == "uint8"

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """The only (height, width) the graph takes when its architecture exports static (Swin-UNet), else None."""
        size = self.report.get("fixed_size")
        return None if size is None else (int(size[0]), int(size[1]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a normalised float batch (or, for a graph with a uint8 input, of the uint8 batch itself); a
        fixed-size graph runs the batch one image at a time."""
        self._check_size(x)
        if x.dtype == torch.uint8 and not self.uint8_input:
            raise InvalidValueError(f"{self.source} takes normalised float batches; uint8 images go to predict()")
        x = x.detach().cpu()
        if x.dtype != torch.uint8:  # a uint8 batch reaches here only for a graph that takes it as it is
            x = denormalise(x.float(), self.meta.preprocessing) if self.uint8_input else x.float()
        return torch.from_numpy(self._batched(self._run, x.contiguous().numpy()))

    def class_ids_of_images(self, images: torch.Tensor) -> torch.Tensor:
        """Class ids ``(N, H, W)`` (int64) of uint8 images ``(N, C, H, W)`` at their own size, by the graph's
        predict form (:mod:`segzoo.inference.class_id_graphs`): no float image or logits leave the runtime."""
        self._check_size(images)
        # numpy, not PyTorch, copies here: PyTorch's threads would spin after each small step, on the runtime's cores
        array = np.ascontiguousarray(images.detach().cpu().numpy())
        return torch.from_numpy(self._batched(self._run_class_ids, array).astype(np.int64, copy=False))

    def _check_size(self, x: torch.Tensor) -> None:
        fixed = self.fixed_size
        if fixed is not None and tuple(x.shape[-2:]) != fixed:
            raise InvalidValueError(f"{self.source} takes only {fixed[0]}x{fixed[1]} inputs, got "
                                    f"{x.shape[-2]}x{x.shape[-1]} (its architecture exports at a fixed size); "
                                    "predict() tiles images of any size with windows of that size")

    def _batched(self, run: Any, array: np.ndarray) -> np.ndarray:
        if self.fixed_size is not None and len(array) > 1:  # a static graph also has batch 1
            return np.concatenate([run(array[i:i + 1]) for i in range(len(array))])
        return run(array)

    def _run_class_ids(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, images: Any, *, tile: int | None = None, overlap: float = 0.25, tta: Sequence[str] = (),
                scales: Sequence[float] = (1.0,), batch: int = 4) -> torch.Tensor:
        """Class ids ``(N, H, W)`` (one image: ``(H, W)``), as ``SegmentationModel.predict`` (same inputs, tiling
        and TTA). A fixed-size model always predicts through windows of its size (``tile`` must be unset)."""
        from segzoo.inference.fast import predict_classes

        return predict_classes(self, images, self.meta.preprocessing, tile=tile, overlap=overlap, tta=tuple(tta),
                               scales=tuple(scales), batch=batch, window=self.fixed_size)


class OnnxModel(ExportedModel):
    """A segzoo ONNX file (fp32 or INT8) in an onnxruntime CPU session (see :class:`ExportedModel`)."""

    def __init__(self, onnx_bytes: bytes, meta: ModelMeta, num_classes: int, report: dict[str, Any] | None = None,
                 input_layout: dict[str, Any] | None = None, source: str = "ONNX model") -> None:
        import onnxruntime as ort

        super().__init__(meta, num_classes, report, input_layout, source)
        self.onnx_bytes = onnx_bytes
        self.session = ort.InferenceSession(onnx_bytes, self.session_options(), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def _run(self, array: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: array})[0]

    @cached_property
    def _class_id_session(self) -> Any:
        """The predict form's session, made on the first ``predict`` that needs it."""
        import onnxruntime as ort

        graph = onnx_class_id_graph(self.onnx_bytes, self.meta.preprocessing, self.uint8_input, self.num_classes == 1)
        return ort.InferenceSession(graph, self.session_options(), providers=["CPUExecutionProvider"])

    def _run_class_ids(self, images: np.ndarray) -> np.ndarray:
        session = self._class_id_session
        return session.run(None, {session.get_inputs()[0].name: images})[0]

    @staticmethod
    def session_options() -> Any:
        """segzoo's onnxruntime options: threads stop spinning when a run ends, since the step that follows
        (PyTorch's threads on the same cores) would otherwise wait for them."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    @classmethod
    def load(cls, path: str | Path) -> OnnxModel:
        """Any ``.onnx`` written by segzoo (``export`` or ``quantize``); an INT8 file's ``report`` says how it was
        calibrated (``QuantizedModel.load`` reads INT8 files only)."""
        import onnx

        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"ONNX model {str(path)!r} does not exist")
        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # onnx raises DecodeError / ValueError / google.protobuf errors
            raise InvalidValueError(f"{str(path)!r} is not a readable ONNX file: {exc}") from exc
        props = {p.key: p.value for p in proto.metadata_props}
        d = read_description(props, repr(str(path)), _onnx_facts(proto))
        warn_if_saturating(d.report, "onnxruntime", repr(str(path)))
        return cls(proto.SerializeToString(), d.meta, d.num_classes, d.report, d.layout, source=repr(str(path)))


OPENVINO_RT_INFO = "segzoo"  # an OpenVINO IR's rt_info section holding the metadata_props of an ONNX export
# OpenVINO's CPU plugin runs float layers in bf16 by default on CPUs that have it (AVX512-BF16, AMX): an "fp32" IR
# then differs from PyTorch by bf16 rounding. segzoo compiles with an explicit precision, f32 unless asked.
OPENVINO_PRECISIONS = ("f32", "bf16", "f16")


def compile_openvino(ov_model: Any, precision: str = "f32") -> Any:
    """``ov_model`` compiled for the CPU with its float layers in ``precision`` (``OPENVINO_PRECISIONS``)."""
    import openvino as ov

    if precision not in OPENVINO_PRECISIONS:
        raise InvalidValueError(f"OpenVINO precision {precision!r}: expected one of {list(OPENVINO_PRECISIONS)}")
    return ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": precision})


class OpenVinoModel(ExportedModel):
    """A segzoo OpenVINO IR (``.xml`` + ``.bin``; fp32 or INT8 from NNCF) compiled for the CPU (see
    :class:`ExportedModel`), its float layers in ``precision`` (f32 by default, not OpenVINO's bf16 default on
    bf16-capable CPUs). Needs the ``openvino`` extra."""

    def __init__(self, ov_model: Any, meta: ModelMeta, num_classes: int, report: dict[str, Any] | None = None,
                 input_layout: dict[str, Any] | None = None, source: str = "OpenVINO model",
                 precision: str = "f32") -> None:
        super().__init__(meta, num_classes, report, input_layout, source)
        self.ov_model = ov_model
        self.precision = precision
        self.compiled = compile_openvino(ov_model, precision)

    def _run(self, array: np.ndarray) -> np.ndarray:
        return self.compiled(array)[0]

    @cached_property
    def _class_id_model(self) -> Any:
        """The predict form, compiled on the first ``predict`` that needs it."""
        model = openvino_class_id_model(self.ov_model, self.meta.preprocessing, self.uint8_input,
                                        self.num_classes == 1)
        return compile_openvino(model, self.precision)

    def _run_class_ids(self, images: np.ndarray) -> np.ndarray:
        return self._class_id_model(images)[0]

    @classmethod
    def load(cls, path: str | Path, precision: str = "f32") -> OpenVinoModel:
        """An IR written by ``segzoo export ... model.xml`` or ``segzoo quantize ... --backend openvino``, its float
        layers run in ``precision``."""
        try:
            import openvino as ov
        except ImportError as exc:
            raise InvalidValueError(f"OpenVINO models need the openvino package: {install_hint('openvino')}"
                                    ) from exc
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"OpenVINO model {str(path)!r} does not exist")
        if not path.with_suffix(".bin").is_file():
            raise MissingFileError(f"OpenVINO model {str(path)!r} lacks its weights file "
                                   f"{str(path.with_suffix('.bin'))!r}")
        try:
            model = ov.Core().read_model(str(path))
        except Exception as exc:  # OpenVINO raises its own RuntimeError subclasses
            raise InvalidValueError(f"{str(path)!r} is not a readable OpenVINO IR: {exc}") from exc
        props = {key: model.get_rt_info([OPENVINO_RT_INFO, key]).astype(str)
                 for key in KEYS if model.has_rt_info([OPENVINO_RT_INFO, key])}
        d = read_description(props, repr(str(path)), _openvino_facts(model))
        warn_if_saturating(d.report, "openvino", repr(str(path)))
        return cls(model, d.meta, d.num_classes, d.report, d.layout, source=repr(str(path)), precision=precision)


def set_openvino_metadata(ov_model: Any, props: dict[str, str]) -> None:
    """Write ``props`` (``describe``'s keys) into an OpenVINO model's rt_info, saved with its IR."""
    for key, value in props.items():
        ov_model.set_rt_info(value, [OPENVINO_RT_INFO, key])


def add_metadata(path: Path, props: dict[str, str]) -> None:
    """Write ``props`` into the ONNX file at ``path`` (in place: ``path`` is a temporary file of the exporter)."""
    import onnx

    proto = onnx.load(str(path))
    existing = {p.key for p in proto.metadata_props}
    for key, value in props.items():
        if key in existing:
            next(p for p in proto.metadata_props if p.key == key).value = value
        else:
            proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def check_uint8_preprocessing(model: Any) -> None:
    """A uint8-input export needs one mean and std per input channel."""
    pre = model.meta.preprocessing
    if len(pre.mean) != model.in_channels:
        raise InvalidValueError(f"uint8_input: the model's preprocessing has {len(pre.mean)} channel means for "
                                f"{model.in_channels} input channels")


def uint8_images(batch: int, channels: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Random uint8 images, the parity inputs of a uint8-input export."""
    return torch.randint(0, 256, (batch, channels, height, width), generator=generator, dtype=torch.uint8)


class LoadedProgram(torch.nn.Module):
    """A loaded program behind the model contract: ``p(x)`` logits of a normalised float batch (a uint8-input
    program is fed the uint8 image the batch came from), ``p.meta``, ``p.num_classes``; the input size is checked
    and the accepted sizes named instead of failing on a symbolic guard. ``p.module`` is the raw program."""

    def __init__(self, module: torch.nn.Module, limits: dict, source: str, meta: ModelMeta | None = None,
                 input_layout: dict | None = None, num_classes: int | None = None) -> None:
        super().__init__()
        self.module, self.limits, self.source = module, limits, source
        self.meta = meta if meta is not None else ModelMeta()
        self.input_layout = dict(input_layout or {"dtype": "float32"})
        self.num_classes = num_classes

    @property
    def uint8_input(self) -> bool:
        return self.input_layout.get("dtype") == "uint8"

    def train(self, mode: bool = True) -> LoadedProgram:
        """A program is traced in eval mode and has no other: ``eval()`` / ``train(False)`` are no-ops."""
        if mode:
            raise InvalidValueError(f"{self.source} is an inference program: it cannot be put in training mode")
        self.training = False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        fixed, low = self.limits.get("size"), self.limits.get("min_side")
        if fixed is not None and [h, w] != list(fixed):
            raise InvalidValueError(f"{self.source} was exported for {fixed[0]}x{fixed[1]} inputs only, got {h}x{w}")
        if low is not None and min(h, w) < low:
            raise InvalidValueError(f"{self.source} takes inputs of at least {low}x{low} pixels, got {h}x{w}")
        if self.uint8_input and x.dtype != torch.uint8:
            x = denormalise(x, self.meta.preprocessing)
        return self.module(x)

    def class_ids_of_images(self, images: torch.Tensor) -> torch.Tensor:
        """Class ids ``(N, H, W)`` of uint8 images ``(N, C, H, W)``: a uint8-input program takes them as they are."""
        with torch.inference_mode():
            return class_ids(self(images if self.uint8_input else normalize(images, self.meta.preprocessing)))

    def predict(self, images, *, tile: int | None = None, overlap: float = 0.25, tta=(), scales=(1.0,),
                batch: int = 4) -> torch.Tensor:
        """Class ids, as ``SegmentationModel.predict`` (uint8 images normalised with ``meta.preprocessing``)."""
        from segzoo.inference.fast import predict_classes

        return predict_classes(self, images, self.meta.preprocessing, tile=tile, overlap=overlap, tta=tuple(tta),
                               scales=tuple(scales), batch=batch)


def load_program(path: str | Path) -> LoadedProgram:
    """A saved program as a callable module (logits of a normalised float batch) that checks the input size and
    knows its classes and preprocessing (programs exported before segzoo described them: ImageNet's defaults)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"exported program {str(path)!r} does not exist")
    import zipfile

    if not zipfile.is_zipfile(path):  # before torch.export.load, which logs a traceback for other files
        raise InvalidValueError(f"{str(path)!r} is not a readable torch.export program (.pt2): not a zip archive")
    extra = {LIMITS_FILE: "", META_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:  # a zip / pickle / version error: torch names no common type
        raise InvalidValueError(f"{str(path)!r} is not a readable torch.export program (.pt2): {exc}") from exc
    source = f"exported program {str(path)!r}"
    facts = _program_facts(program)
    limits = read_limits(extra[LIMITS_FILE], source, facts)
    if not extra[META_FILE]:
        return LoadedProgram(program.module(), limits, source)
    d = read_description(parse_json(extra[META_FILE], f"{source}: {META_FILE}"), source, facts)
    return LoadedProgram(program.module(), limits, source, d.meta, d.layout, d.num_classes)


def _dims(values: list[Any]) -> list[int | None]:
    """Static dimensions as ints, symbolic ones as None."""
    return [v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None for v in values]


def _facts(input_dims: list[int | None], output_dims: list[int | None]) -> GraphFacts:
    if len(input_dims) != 4 or len(output_dims) != 4:
        return GraphFacts()
    h, w = input_dims[2], input_dims[3]
    return GraphFacts(output_dims[1], input_dims[1], (h, w) if h is not None and w is not None else None)


def _onnx_facts(proto: Any) -> GraphFacts:
    def dims(value_info: Any) -> list[int | None]:
        return _dims([d.dim_value if d.HasField("dim_value") else None
                      for d in value_info.type.tensor_type.shape.dim])

    if not proto.graph.input or not proto.graph.output:
        return GraphFacts()
    return _facts(dims(proto.graph.input[0]), dims(proto.graph.output[0]))


def _openvino_facts(model: Any) -> GraphFacts:
    def dims(port: Any) -> list[int | None]:
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic:
            return []
        return _dims([d.get_length() if d.is_static else None for d in shape])

    return _facts(dims(model.inputs[0]), dims(model.outputs[0]))


def _program_facts(program: Any) -> GraphFacts:
    """The program's user input and first output, from the traced graph's example values (symbolic sizes: None)."""
    nodes = [n for n in program.graph.nodes if n.op == "placeholder"]
    user_inputs = set(program.graph_signature.user_inputs)
    placeholders = [n for n in nodes if n.name in user_inputs]
    outputs = [n for n in program.graph.nodes if n.op == "output"]
    try:
        x = placeholders[0].meta["val"]
        y = outputs[0].args[0][0].meta["val"]
        return _facts(_dims(list(x.shape)), _dims(list(y.shape)))
    except (IndexError, KeyError, AttributeError, TypeError):
        return GraphFacts()
