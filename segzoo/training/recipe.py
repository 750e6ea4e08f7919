"""Training recipes: a YAML file of model, data, augmentation and training settings, with overrides."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segzoo.core.config import Preprocessing, check_fields, label_count
from segzoo.core.errors import InvalidValueError, MissingFileError
from segzoo.data.dataset import DataConfig
from segzoo.training.metrics import Monitor

__all__ = ["ModelSpec", "AugmentConfig", "TrainConfig", "DistillConfig", "Recipe", "RECIPES_DIR", "SECTIONS"]

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
SECTIONS = ("model", "data", "augment", "train", "distill")


def _check_range(where: str, value: Any, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, optional: bool = False) -> None:
    """``value`` is a finite number within the bounds (None where ``optional``), else an error naming the key."""
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
        span = f"in {lo}, {hi}" if lo and hi else (f">{'' if low_open else '='} {low:g}" if lo else f"<= {high:g}")
        raise InvalidValueError(f"recipe {where} must be a finite number {span}"
                                f"{' (or null)' if optional else ''}, got {value!r}")


def _build(cls: type, data: Mapping[str, Any] | None, where: str):
    """``cls(**data)`` for a recipe section, every key and value checked against the dataclass first (the same
    checker as the model configs': ``segzoo.core.config.check_fields``)."""
    if data is not None and not isinstance(data, Mapping):
        raise InvalidValueError(f"recipe section {where!r} must be a mapping of keys to values, got {data!r}")
    data = dict(data or {})
    check_fields(cls, data, f"recipe section {where!r}", f"recipe {where}.")
    return cls(**data)


@dataclass
class ModelSpec:
    """A named model (``name``), a free composition (``decoder`` + ``encoder``) or trained weights to fine-tune
    (``pretrained``: a zoo name such as ``deeplabv3plus_mnv2.camvid``, a file or a folder), plus overrides.

    With ``pretrained`` every tensor is loaded except those the data's class count changes (the head,
    re-initialised and said once); ``num_classes``, when given, must be the data's.
    """

    name: str | None = None
    decoder: str | None = None
    encoder: str | None = None
    pretrained: str | None = None
    num_classes: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def build(self, num_classes: int):
        from segzoo.api import create, from_pretrained
        from segzoo.models import create_model

        if self.num_classes is not None and label_count(self.num_classes) != num_classes:
            raise InvalidValueError(f"recipe model.num_classes is {self.num_classes}, but data.classes names "
                                    f"{num_classes} classes (a binary model, num_classes 1, has 2: background and "
                                    "foreground)")
        num_classes = self.num_classes or num_classes
        if self.pretrained:
            others = [k for k in ("name", "decoder", "encoder") if getattr(self, k)]
            if others:
                raise InvalidValueError(f"recipe model.pretrained ({self.pretrained!r}) brings its architecture; "
                                        f"drop model.{others[0]} ({getattr(self, others[0])!r})")
            if "encoder_weights" in self.overrides:
                raise InvalidValueError(f"recipe model.pretrained ({self.pretrained!r}) brings trained encoder "
                                        "weights; drop model.overrides.encoder_weights")
            return from_pretrained(self.pretrained, num_classes=num_classes, **self.overrides).train()
        if self.name:
            return create(self.name, num_classes=num_classes, **self.overrides)
        if not (self.decoder and self.encoder):
            raise InvalidValueError("recipe 'model' needs 'name', 'decoder' and 'encoder', or 'pretrained'")
        return create_model(self.decoder, self.encoder, num_classes, **self.overrides)


@dataclass
class AugmentConfig:
    crop_size: int = 512
    scale: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    vflip: bool = False
    rotate90: bool = False  # random quarter turns: for overhead imagery
    colour_jitter: float = 0.2
    # class-aware crops: this share of the training crops is placed over a pixel of one of these classes
    # (names from data.classes), for classes too rare for uniform crops to show often
    focus_classes: list[str] = field(default_factory=list)
    focus_p: float = 0.0
    eval_max_size: int | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_range("augment.crop_size", self.crop_size, 16, 8192)
        if len(self.scale) != 2:
            raise InvalidValueError(f"recipe augment.scale must be [low, high], got {self.scale!r}")
        for value in self.scale:
            _check_range("augment.scale", value, 0, 8, low_open=True)
        if self.scale[0] > self.scale[1]:
            raise InvalidValueError(f"recipe augment.scale must be [low, high] with low <= high, got {self.scale!r}")
        _check_range("augment.colour_jitter", self.colour_jitter, 0, 1)
        _check_range("augment.focus_p", self.focus_p, 0, 1)
        if self.focus_p and not self.focus_classes:
            raise InvalidValueError(f"recipe augment.focus_p {self.focus_p!r} needs augment.focus_classes (the "
                                    "classes to place crops over)")
        _check_range("augment.eval_max_size", self.eval_max_size, 16, optional=True)

    def preprocessing_config(self) -> Preprocessing | None:
        """The recipe's normalisation, or None where it states none (the model's own is kept: the one its
        encoder weights' header states, else ImageNet's)."""
        return Preprocessing.from_dict(self.preprocessing) if self.preprocessing else None

    def train_transform(self, ignore_index: int, classes: Sequence[str] = ()):
        """The training preset; ``classes`` (the data's class names) resolve ``focus_classes`` to ids."""
        from segzoo.data.transforms import train_preset

        unknown = [name for name in self.focus_classes if name not in classes]
        if unknown:
            raise InvalidValueError(f"augment.focus_classes names {unknown}, which are not among the data's "
                                    f"classes {list(classes)}")
        return train_preset(self.crop_size, tuple(self.scale), self.hflip, self.vflip, self.colour_jitter,
                            ignore_index, rotate90=self.rotate90,
                            focus_classes=tuple(list(classes).index(name) for name in self.focus_classes),
                            focus_p=self.focus_p)

    def eval_transform(self):
        from segzoo.data.transforms import eval_preset

        return eval_preset(self.eval_max_size)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 8
    val_batch_size: int = 1
    num_workers: int = 0
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    encoder_lr_mult: float = 1.0  # < 1: a lower learning rate for the (pretrained) encoder
    weight_decay: float = 1e-4
    momentum: float = 0.9
    scheduler: str = "poly"  # poly | cosine | onecycle | plateau | none
    warmup_steps: int = 0
    poly_power: float = 0.9
    loss: str = "ce"
    class_weights: list[float] | None = None
    amp: str = "auto"  # auto (bf16 where the device computes it natively, else none) | none | bf16 | fp16
    grad_accum: int = 1
    clip_grad_norm: float | None = None
    channels_last: bool = False
    compile: bool = False
    ema_decay: float | None = None
    freeze_encoder_epochs: int = 0  # -1: frozen for the whole run
    # Encoder BatchNorm layers keep their pretrained statistics (eval mode) while the weights train: right for
    # small batches, and for backbones whose BN was folded into the convolutions (batch statistics would
    # rescale every pretrained activation).
    freeze_encoder_bn: bool = False
    seed: int = 0
    deterministic: bool = False
    val_every: int = 1
    monitor: str = "miou"
    early_stopping: int | None = None  # validations without improvement
    max_seconds: float | None = None  # stop at the first step past this wall time (last/ resumes there)
    max_steps_per_epoch: int | None = None
    sync_bn: bool = False
    tensorboard: bool = False
    plots: bool = True
    progress: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        choices = {"optimizer": ("adamw", "sgd"), "scheduler": ("poly", "cosine", "onecycle", "plateau", "none"),
                   "amp": ("auto", "none", "bf16", "fp16"), "monitor": tuple(Monitor.MODES)}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise InvalidValueError(f"train.{key} must be one of {allowed}, got {getattr(self, key)!r}")
        for key in ("epochs", "batch_size", "grad_accum", "val_every", "val_batch_size"):
            if int(getattr(self, key)) < 1:
                raise InvalidValueError(f"train.{key} must be at least 1, got {getattr(self, key)!r}")
        _check_range("train.lr", self.lr, 0, 10, low_open=True)
        _check_range("train.encoder_lr_mult", self.encoder_lr_mult, 0)
        _check_range("train.weight_decay", self.weight_decay, 0)
        _check_range("train.momentum", self.momentum, 0, 1, high_open=True)
        _check_range("train.warmup_steps", self.warmup_steps, 0)
        _check_range("train.poly_power", self.poly_power, 0, low_open=True)
        _check_range("train.num_workers", self.num_workers, 0, 64)
        _check_range("train.ema_decay", self.ema_decay, 0, 1, low_open=True, high_open=True, optional=True)
        _check_range("train.clip_grad_norm", self.clip_grad_norm, 0, low_open=True, optional=True)
        _check_range("train.max_seconds", self.max_seconds, 0, low_open=True, optional=True)
        _check_range("train.max_steps_per_epoch", self.max_steps_per_epoch, 1, optional=True)
        _check_range("train.early_stopping", self.early_stopping, 1, optional=True)
        _check_range("train.freeze_encoder_epochs", self.freeze_encoder_epochs, -1)
        for weight in self.class_weights or ():
            _check_range("train.class_weights", weight, 0)


WEIGHT_SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda progress: 1.0,
    "linear": lambda progress: 1.0 - progress,
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
}


@dataclass
class DistillConfig:
    """Knowledge distillation (``segzoo.training.distill``): a frozen ``teacher`` (zoo name, weights file or
    folder) whose logits on the same batch add ``weight`` times the ``loss`` (``kl`` per pixel, or ``cwd``
    channel-wise) at ``temperature`` (default: 1 for kl, 4 for cwd) to the task loss. ``weight_schedule``
    ``linear`` or ``cosine`` decays that weight to 0 over the run's steps (the teacher guiding the start, the
    labels the end); ``constant`` keeps it. ``teacher_amp: bf16`` runs the teacher in bf16 autocast. An empty
    ``teacher`` means no distillation."""

    teacher: str | None = None
    loss: str = "kl"
    weight: float = 1.0
    weight_schedule: str = "constant"  # constant | linear | cosine
    temperature: float | None = None
    teacher_amp: str = "none"  # none | bf16

    def __post_init__(self) -> None:
        from segzoo.training.distill import DISTILL_LOSSES

        if self.loss not in DISTILL_LOSSES:
            raise InvalidValueError(f"distill.loss must be one of {sorted(DISTILL_LOSSES)}, got {self.loss!r}")
        if self.teacher_amp not in ("none", "bf16"):
            raise InvalidValueError(f"distill.teacher_amp must be 'none' or 'bf16', got {self.teacher_amp!r}")
        if self.weight_schedule not in WEIGHT_SCHEDULES:
            raise InvalidValueError(f"distill.weight_schedule must be one of {list(WEIGHT_SCHEDULES)}, got "
                                    f"{self.weight_schedule!r}")
        _check_range("distill.weight", self.weight, 0, low_open=True)
        _check_range("distill.temperature", self.temperature, 0, 100, low_open=True, optional=True)

    def weight_at(self, progress: float) -> float:
        """The distillation weight at ``progress`` through the run (0: its first step, 1: past its last)."""
        return self.weight * WEIGHT_SCHEDULES[self.weight_schedule](min(max(progress, 0.0), 1.0))


ARCHITECTURE_KEYS = ("name", "decoder", "encoder", "pretrained")


def with_init(data: Mapping[str, Any], init: str) -> dict[str, Any]:
    """The recipe ``data`` fine-tuning the trained weights ``init`` (a zoo name, file or folder).

    One rule: the weights bring their architecture and every tensor, so ``init`` takes the place of the recipe's
    model choice. The ``model`` section may be left out; what it names of an architecture (``name``, ``decoder``,
    ``encoder``, another ``pretrained``, ``overrides.encoder_weights``) is replaced, and said in one warning;
    ``num_classes`` and the other overrides still apply."""
    if not isinstance(init, str) or not init:
        raise InvalidValueError(f"--init takes trained weights (a zoo name, file or folder), got {init!r}")
    data = dict(data)
    model = data.get("model") or {}
    if not isinstance(model, Mapping):
        raise InvalidValueError(f"recipe section 'model' must be a mapping of keys to values, got {model!r}")
    model = dict(model)
    replaced = [f"model.{key}={model[key]!r}" for key in ARCHITECTURE_KEYS if model.get(key) not in (None, init)]
    overrides = model.get("overrides")
    if isinstance(overrides, Mapping) and "encoder_weights" in overrides:
        replaced.append(f"model.overrides.encoder_weights={overrides['encoder_weights']!r}")
        model["overrides"] = {k: v for k, v in overrides.items() if k != "encoder_weights"}
    if replaced:
        warnings.warn(f"--init {init!r} brings its own architecture and weights: it replaces the recipe's "
                      f"{', '.join(replaced)}", UserWarning, stacklevel=3)
    data["model"] = {**{k: v for k, v in model.items() if k not in ARCHITECTURE_KEYS}, "pretrained": init}
    return data


@dataclass
class Recipe:
    model: ModelSpec
    data: DataConfig
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    # "section.key" of every value the recipe file (or an override) states, as opposed to a default: a
    # fine-tune inherits its weights' requirements where the recipe states nothing
    stated: frozenset[str] = frozenset()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], init: str | None = None) -> Recipe:
        """A recipe from its sections. ``init`` (``segzoo train --init``): trained weights that take the place of
        the recipe's model choice (see :func:`with_init`)."""
        if init is not None:
            data = with_init(data, init)
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise InvalidValueError(f"recipe: unknown section(s) {unknown}; sections: {', '.join(SECTIONS)}")
        if "data" not in data or "model" not in data:
            raise InvalidValueError("recipe needs 'model' and 'data' sections")
        # no I/O here: the data root and encoder weights are resolved where they are used
        # (segzoo.data.dataset.resolve_data_root, segzoo.encoders.weights.resolve_encoder_weights)
        stated = frozenset(f"{section}.{key}" for section in SECTIONS
                           if isinstance(data.get(section), Mapping) for key in data[section])
        recipe = cls(
            _build(ModelSpec, data["model"], "model"),
            _build(DataConfig, data["data"], "data"),
            _build(AugmentConfig, data.get("augment"), "augment"),
            _build(TrainConfig, data.get("train"), "train"),
            _build(DistillConfig, data.get("distill"), "distill"),
            stated,
        )
        recipe.check()
        return recipe

    def check(self) -> None:
        """Settings that contradict each other, or that are stated but would be ignored: an option is honoured
        or refused, never silently dropped."""
        train, data = self.train, self.data
        weights = train.class_weights
        if weights is not None and len(weights) != len(data.classes):
            raise InvalidValueError(f"recipe train.class_weights has {len(weights)} weights for the "
                                    f"{len(data.classes)} classes {list(data.classes)}")
        unused = {
            "train.momentum": (train.optimizer != "sgd", f"train.optimizer is {train.optimizer!r} (only sgd uses it)"),
            "train.poly_power": (train.scheduler != "poly", f"train.scheduler is {train.scheduler!r}, not poly"),
            "train.warmup_steps": (train.scheduler not in ("poly", "cosine"),
                                   f"train.scheduler {train.scheduler!r} has no warmup (poly and cosine do)"),
            "data.train_list": (data.layout != "list", f"data.layout is {data.layout!r}, not list"),
            "data.val_list": (data.layout != "list", f"data.layout is {data.layout!r}, not list"),
            "data.val_fraction": (data.layout != "folder", f"data.layout is {data.layout!r} (its lists are the "
                                                            "splits)"),
            "data.images": (data.layout != "folder", f"data.layout is {data.layout!r}, not folder"),
            "data.masks": (data.layout != "folder", f"data.layout is {data.layout!r}, not folder"),
            "data.ignore_colours": (not data.colours, "data.colours is not set (masks hold class ids)"),
            **{f"distill.{key}": (not self.distill.teacher, "distill.teacher is not set")
               for key in ("loss", "weight", "weight_schedule", "temperature", "teacher_amp")},
        }
        for key, (ignored, why) in unused.items():
            section, name = key.split(".")
            config = {"train": train, "data": data, "distill": self.distill}[section]
            spec = next(f for f in dataclasses.fields(config) if f.name == name)
            default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
            # a stated default (a recipe written out in full, like last/recipe.json) changes nothing: allowed
            if key in self.stated and ignored and getattr(config, name) != default:
                raise InvalidValueError(f"recipe {key} would be ignored: {why}; remove it or change that setting")

    @classmethod
    def load(cls, path: str | Path, overrides: Sequence[str] = (), init: str | None = None) -> Recipe:
        """A recipe file (or a bundled recipe's name) with ``section.key=value`` overrides (YAML values), and
        optionally trained weights to start from (``init``, as :meth:`from_dict`)."""
        import yaml

        path = Path(path)
        if not path.is_file() and (RECIPES_DIR / f"{path}.yaml").is_file():
            path = RECIPES_DIR / f"{path}.yaml"
        if not path.is_file():
            bundled = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
            raise MissingFileError(f"recipe {str(path)!r} not found (bundled recipes: {bundled})")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise InvalidValueError(f"recipe {str(path)!r} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidValueError(f"recipe {str(path)!r} must be a mapping of sections, got {type(data).__name__}")
        for item in overrides:
            key, eq, value = item.partition("=")
            if not eq or "." not in key:
                raise InvalidValueError(f"override {item!r}: expected section.key=value, e.g. train.lr=0.01")
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise InvalidValueError(f"override {item!r}: {part!r} is a value, not a section")
            try:
                node[leaf] = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise InvalidValueError(f"override {item!r}: the value is not valid YAML: {exc}") from exc
        return cls.from_dict(data, init)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "augment": dataclasses.asdict(self.augment),
            "train": dataclasses.asdict(self.train),
            "distill": dataclasses.asdict(self.distill),
        }
