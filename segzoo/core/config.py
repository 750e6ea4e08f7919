"""Model configuration: small dataclasses that round-trip through JSON.

A :class:`ModelConfig` describes a model completely; ``build_model(config)``
re-creates it exactly, and ``ModelConfig.from_json(config.to_json())`` equals
``config``. Named models are functions returning a ``ModelConfig``.

The architecture configs are frozen and validated when made: derive a variant with
``dataclasses.replace``. A built model's ``model.config`` is the resolved one: every
default the factory chose (output stride, decoder parameters, auxiliary channels) is
written out, so the config says what was built. ``Preprocessing`` and ``ModelMeta``
describe data and provenance and stay editable.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from segzoo.core.errors import InvalidTypeError, InvalidValueError, SegzooError
from segzoo.core.io import parse_json

__all__ = ["EncoderConfig", "AuxHeadConfig", "ClassificationHeadConfig", "ModelConfig", "Preprocessing", "ModelMeta",
           "DescribedModel", "check_classes", "check_fields", "conforms"]


def _jsonable(value: Any) -> Any:
    """Tuples become lists so that ``from_dict(to_dict(c)) == c`` holds after a JSON trip."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def conforms(value: Any, hint: Any) -> bool:
    """Whether a JSON / YAML value fits a dataclass field's type hint (the simple hints configs and recipes use;
    a class hint is left to the class's own checks)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # a nested config: its fields, or itself
        return isinstance(value, (Mapping, hint))
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(conforms(v, a) for v, a in zip(value, args))
        return all(conforms(v, args[0]) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict) and (not args or all(
            conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items()))
    return True


def _describe(hint: Any) -> str:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"a mapping of {hint.__name__} fields"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        hint, str(hint).replace("typing.", ""))


def check_fields(cls: type, data: Mapping[str, Any], where: str, key_prefix: str | None = None) -> None:
    """The one checker of configs and recipe sections: ``data`` is a mapping whose keys are fields of the dataclass
    ``cls``, whose values fit their type hints, and which has every required field; else an error naming
    ``where`` and the key (``key_prefix + key`` for values: ``"recipe train."`` gives ``recipe train.lr``)."""
    if not isinstance(data, Mapping):
        raise InvalidTypeError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidValueError(f"{where}: unknown key(s) {unknown}"
                                f"{'' if key_prefix else f' for {cls.__name__}'}; expected some of {sorted(known)}")
    hints = typing.get_type_hints(cls)
    prefix = key_prefix if key_prefix is not None else f"{where}: "
    for key, value in data.items():
        if not conforms(value, hints[key]):
            raise InvalidValueError(f"{prefix}{key}: expected {_describe(hints[key])}, got {value!r}")
    missing = [f.name for f in fields if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise InvalidValueError(f"{where} lacks required key(s) {missing}")


def parse_config(cls: type, data: Any, what: str) -> Any:
    """``cls.from_dict(data)`` for data read from a file: every failure, a bug in a field's own check included, is
    one ``InvalidValueError`` naming ``what``."""
    try:
        return cls.from_dict(data)
    except SegzooError as exc:
        raise InvalidValueError(str(exc) if str(exc).startswith(what) else f"{what}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        raise InvalidValueError(f"{what}: {type(exc).__name__}: {exc}") from None


class _JsonConfig:
    """``to_dict`` / ``from_dict`` for the config dataclasses; unknown keys are an error naming ``_where``."""

    _where = "config"

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        check_fields(cls, data, cls._where)
        return cls(**data)


@dataclass(frozen=True)
class EncoderConfig(_JsonConfig):
    """Which encoder to build and how.

    ``name`` is a registered encoder (``plain``, a plugin's) or any timm model name.
    ``depth`` keeps the first ``depth`` feature stages (None: all). ``output_stride``
    8 or 16 dilate the last stages (an error where the family cannot); None means
    the decoder's design stride where the encoder can dilate, else its natural one.
    ``weights`` is None, ``"imagenet"`` (timm's pretrained weights, needs the network)
    or a path to a local ``.safetensors`` / ``.pth`` state dict.
    ``params`` are extra keyword arguments of the encoder's builder.
    ``uniform_dilation`` gives every convolution of a dilated stage the stage's
    full rate (smp's convention for its ResNets) instead of timm's and
    torchvision's, where the first block keeps the previous rate.
    """

    _where = "encoder config"

    name: str
    in_channels: int = 3
    depth: int | None = None
    output_stride: int | None = None
    weights: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    uniform_dilation: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _jsonable(dict(self.params)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncoderConfig:
        check_fields(cls, data, cls._where)
        return cls(**{**data, "params": dict(data.get("params") or {})})


@dataclass(frozen=True)
class AuxHeadConfig(_JsonConfig):
    """torchvision-style auxiliary classifier on an intermediate feature (``feature_index``)."""

    _where = "aux_head config"

    feature_index: int = -2
    channels: int | None = None  # None: a quarter of the feature's channels, as torchvision
    dropout: float = 0.1



@dataclass(frozen=True)
class ClassificationHeadConfig(_JsonConfig):
    """Image-level classification head on the deepest feature (global pooling + linear)."""

    _where = "classification_head config"

    num_classes: int
    pooling: str = "avg"  # "avg" | "max"
    dropout: float = 0.0



@dataclass(frozen=True)
class ModelConfig(_JsonConfig):
    """Everything needed to build a segmentation model.

    ``decoder`` names a registered decoder and ``decoder_params`` are its keyword
    arguments. The segmentation head maps the decoder's output to ``num_classes``
    logits with a ``head_kernel_size`` convolution; logits are resized to the input.
    """

    _where = "model config"

    encoder: EncoderConfig
    decoder: str
    num_classes: int
    decoder_params: dict[str, Any] = field(default_factory=dict)
    head_kernel_size: int = 1
    aux_head: AuxHeadConfig | None = None
    classification_head: ClassificationHeadConfig | None = None
    align_corners: bool = False  # of the final logits upsampling
    # a structurally pruned model: the layers whose widths differ from the design's, by module name:
    # convolutions [in_channels, out_channels, groups], batch norms [num_features], linear [in, out]
    pruned: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            object.__setattr__(self, "encoder", EncoderConfig.from_dict(self.encoder))
        if isinstance(self.aux_head, Mapping):
            object.__setattr__(self, "aux_head", AuxHeadConfig.from_dict(self.aux_head))
        if isinstance(self.classification_head, Mapping):
            head = ClassificationHeadConfig.from_dict(self.classification_head)
            object.__setattr__(self, "classification_head", head)
        object.__setattr__(self, "decoder_params", _jsonable(dict(self.decoder_params)))
        object.__setattr__(self, "pruned", _jsonable(dict(self.pruned)))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field whose value cannot build a model (run once, when the
        config is made: it is frozen)."""
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise InvalidValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        enc = self.encoder
        if isinstance(enc.in_channels, bool) or not isinstance(enc.in_channels, int) or enc.in_channels < 1:
            raise InvalidValueError(f"in_channels must be a positive integer, got {enc.in_channels!r}")
        stride = enc.output_stride
        if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or stride < 1
                                   or stride & (stride - 1)):
            raise InvalidValueError(f"output_stride must be a power of two (8, 16, 32, ...) or None, got {stride!r}")
        if enc.depth is not None and (not isinstance(enc.depth, int) or enc.depth < 1):
            raise InvalidValueError(f"encoder depth must be a positive integer or None, got {enc.depth!r}")
        if self.aux_head is not None and not isinstance(self.aux_head, AuxHeadConfig):
            raise InvalidTypeError(f"aux_head must be a mapping of AuxHeadConfig fields or None, got {self.aux_head!r}")
        if self.classification_head is not None and not isinstance(self.classification_head,
                                                                   ClassificationHeadConfig):
            raise InvalidTypeError(f"classification_head must be a mapping of ClassificationHeadConfig fields or None, "
                                   f"got {self.classification_head!r}")
        if not isinstance(self.decoder, str):
            raise InvalidTypeError(f"decoder must be a name, got {self.decoder!r}")
        for name, dims in self.pruned.items():
            if not isinstance(name, str) or not isinstance(dims, list) or not 1 <= len(dims) <= 3 or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
                raise InvalidValueError(f"pruned widths must map layer names to 1 to 3 positive integers, got "
                                        f"{name!r}: {dims!r}")
        if self.head_kernel_size not in (1, 3):
            raise InvalidValueError(f"head_kernel_size must be 1 or 3, got {self.head_kernel_size!r}")
        if self.classification_head is not None and self.classification_head.num_classes < 1:
            raise InvalidValueError(
                f"classification_head.num_classes must be positive, got {self.classification_head.num_classes!r}"
            )

    # -- serialisation ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        check_fields(cls, data, cls._where)
        return cls(**{**data, "decoder_params": _jsonable(dict(data.get("decoder_params") or {}))})

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str, what: str = "model config") -> ModelConfig:
        """The config in ``text``, which may come from a file: bounded JSON, every field checked; anything else is
        one ``InvalidValueError`` naming ``what`` and the field."""
        return parse_config(cls, parse_json(text, what), what)

    def copy(self) -> ModelConfig:
        """An equal config (kept for code written when configs were mutable; a frozen config can be shared)."""
        return self


@dataclass
class Preprocessing(_JsonConfig):
    """How to turn an image into the model's input: ``(image / scale - mean) / std``.

    ``input_range`` is the range the image is scaled to before normalising:
    ``(0, 1)`` means uint8 pixels divided by 255.
    """

    _where = "preprocessing"

    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    input_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.input_range = tuple(float(v) for v in self.input_range)  # type: ignore[assignment]
        values = self.mean + self.std + self.input_range
        if not all(math.isfinite(v) for v in values):
            raise InvalidValueError(f"preprocessing holds a non-finite number: mean {self.mean}, std {self.std}, "
                                    f"input_range {self.input_range}")
        if len(self.input_range) != 2 or self.input_range[0] >= self.input_range[1]:
            raise InvalidValueError(f"preprocessing input_range must be (low, high) with low < high, got "
                                    f"{self.input_range}")
        if not self.mean:
            raise InvalidValueError("preprocessing needs a mean and std per channel, got none")
        if len(self.mean) != len(self.std):
            raise InvalidValueError(f"preprocessing mean {self.mean} and std {self.std} differ in length")
        if any(v <= 0 for v in self.std):
            raise InvalidValueError(f"preprocessing std must be positive, got {self.std}")



@dataclass
class ModelMeta(_JsonConfig):
    """What a user needs besides the architecture: classes, preprocessing, provenance."""

    _where = "model meta"

    class_names: list[str] | None = None
    class_colours: list[list[int]] | None = None  # RGB per class, for overlays and cards
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    dataset: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    license: str | None = None
    description: str | None = None
    # provenance: what the encoder was initialised from before training (a name, path or "imagenet"); a saved
    # model never reads it again, its weights file holds every tensor
    encoder_weights: str | None = None
    # provenance of a fine-tuned model: the weights it started from, {"source": ..., "sha256": ...}
    parent: dict[str, str] | None = None
    # what training these weights further requires, e.g. {"freeze_encoder_bn": True} for a backbone whose
    # BatchNorm was folded (batch statistics would rescale every pretrained activation); a fine-tune inherits it
    training: dict[str, Any] = field(default_factory=dict)
    # provenance of a distilled model: the teacher it learnt from, {"source", "sha256", "loss", "weight", ...}
    teacher: dict[str, str] | None = None
    # provenance of a pruned model: {"kept_flops", "target_flops", "criterion", ...}; its parent is ``parent``
    pruning: dict[str, Any] | None = None
    # the stages before ``parent``, oldest first: each earlier weights file ({"source", "sha256"}) with what it was
    # fine-tuned from ("parent", "parent_sha256") and distilled from ("teacher", "teacher_sha256"), so that a
    # fine-tune of a distilled fine-tune still names every teacher
    ancestry: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.preprocessing, Mapping):
            self.preprocessing = Preprocessing.from_dict(self.preprocessing)
        if not isinstance(self.preprocessing, Preprocessing):
            raise InvalidTypeError(f"preprocessing must be a mapping of mean / std / input_range, got "
                                   f"{self.preprocessing!r}")
        if self.class_names is not None:
            if isinstance(self.class_names, (str, bytes)) or not isinstance(self.class_names, (list, tuple)):
                raise InvalidTypeError(f"class_names must be a list of names, got {self.class_names!r}")
            self.class_names = [str(c) for c in self.class_names]
        if self.class_colours is not None:
            colours = self.class_colours
            if (not isinstance(colours, (list, tuple)) or not all(
                    isinstance(rgb, (list, tuple)) and len(rgb) == 3
                    and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgb)
                    for rgb in colours)):
                raise InvalidValueError(f"class_colours must be RGB triples of integers in 0..255, got {colours!r}")
            self.class_colours = [[int(v) for v in rgb] for rgb in colours]
        if not isinstance(self.metrics, Mapping):
            raise InvalidTypeError(f"metrics must be a mapping of names to numbers, got {self.metrics!r}")
        for key, value in self.metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidValueError(f"metric {key!r} must be a finite number, got {value!r}")
        self.metrics = {str(k): float(v) for k, v in self.metrics.items()}
        if self.parent is not None and (not isinstance(self.parent, Mapping)
                                        or not all(isinstance(v, str) for v in self.parent.values())):
            raise InvalidTypeError(f"meta parent must map 'source' / 'sha256' to strings, got {self.parent!r}")
        if self.teacher is not None and (not isinstance(self.teacher, Mapping)
                                         or not all(isinstance(v, str) for v in self.teacher.values())):
            raise InvalidTypeError(f"meta teacher must map 'source' / 'sha256' / ... to strings, got {self.teacher!r}")
        if not isinstance(self.training, Mapping):
            raise InvalidTypeError(f"meta training must be a mapping of settings, got {self.training!r}")
        self.training = dict(self.training)
        if not isinstance(self.ancestry, (list, tuple)) or not all(
                isinstance(stage, Mapping) and all(isinstance(v, str) for v in stage.values())
                for stage in self.ancestry):
            raise InvalidTypeError(f"meta ancestry must be a list of mappings of strings ('source', 'sha256', "
                                   f"'parent', 'teacher', ...), got {self.ancestry!r}")
        self.ancestry = [dict(stage) for stage in self.ancestry]

    def descendants_ancestry(self, loaded_from: Mapping[str, str]) -> list[dict[str, str]]:
        """The ``ancestry`` of weights made from these ones (loaded from ``loaded_from``, {"source", "sha256"}):
        this ancestry, then these weights with what they were fine-tuned and distilled from, if anything (weights
        trained from an ImageNet encoder alone add no stage)."""
        stage = {"source": loaded_from.get("source", "unknown"), "sha256": loaded_from.get("sha256", "unknown")}
        # a pruned file's own parent is not repeated: the pruning record that its fine-tunes keep names it
        pruned_here = bool(self.pruning) and self.pruning.get("parent") == self.parent
        for role, record in (("parent", None if pruned_here else self.parent), ("teacher", self.teacher)):
            if record:
                stage[role] = record.get("source", "unknown")
                stage[f"{role}_sha256"] = record.get("sha256", "unknown")
        made_from = "parent" in stage or "teacher" in stage
        return [*self.ancestry, stage] if made_from else list(self.ancestry)

    def for_classes(self, num_classes: int) -> ModelMeta:
        """This meta for a model with ``num_classes`` classes: a copy, with the class names and colours (which
        describe another head) dropped together when their count differs."""
        meta = ModelMeta.from_dict(self.to_dict())
        if meta.class_names is not None and len(meta.class_names) != label_count(num_classes):
            meta.class_names = None
        if meta.class_colours is not None and len(meta.class_colours) != label_count(num_classes):
            meta.class_colours = None
        return meta

    def check(self, num_classes: int, in_channels: int | None = None) -> None:
        """This meta describes a model with ``num_classes`` classes (and ``in_channels`` input channels, where
        known): one class name and colour per class, one mean and std per channel."""
        if in_channels is not None and len(self.preprocessing.mean) not in (1, in_channels):
            raise InvalidValueError(f"preprocessing has {len(self.preprocessing.mean)} channel means "
                                    f"{list(self.preprocessing.mean)} for a model with {in_channels} input channels")
        labels = label_count(num_classes)
        what = f"a model with {num_classes} classes" if labels == num_classes else "a binary model (2 classes)"
        if self.class_names is not None and len(self.class_names) != labels:
            raise InvalidValueError(f"{len(self.class_names)} class names {self.class_names} for {what}")
        if self.class_colours is not None and len(self.class_colours) != labels:
            raise InvalidValueError(f"{len(self.class_colours)} class colours for {what}")



@runtime_checkable
class DescribedModel(Protocol):
    """What the storage layer needs of a model (a ``SegmentationModel`` is one): its resolved config, its meta and
    its tensors. Storage sits below models and names this protocol instead of the class."""

    config: ModelConfig
    meta: ModelMeta

    def state_dict(self) -> dict[str, Any]: ...

    def parameters(self) -> Any: ...


def label_count(num_classes: int) -> int:
    """How many class ids a model with ``num_classes`` output channels predicts: a single-channel model is binary,
    predicting 0 (background) and 1 (foreground), so its class names, colours and scores count two."""
    return 2 if num_classes == 1 else num_classes


def check_classes(model: Any, classes: typing.Sequence[str], model_what: str, data_what: str) -> None:
    """The model (anything with ``num_classes`` and ``meta``: a segzoo model or an exported file's runtime) predicts
    exactly the data's classes (count, and names where the model has them), else an error saying both sides."""
    names = model.meta.class_names
    if label_count(model.num_classes) != len(classes) or (names is not None and list(names) != list(classes)):
        theirs = f"{label_count(model.num_classes)} classes" + (f" {list(names)}" if names is not None else "")
        raise InvalidValueError(f"{model_what} predict {theirs}, but {data_what} has {len(classes)} classes "
                                f"{list(classes)}")
