"""The front door: list what the registries hold, create a named model, load one from a file, a folder, the
Hugging Face Hub or the zoo, and load anything segzoo predicts with (``load``: weights or an exported file).

This module sits above ``models`` (configs -> modules), ``storage`` (the weights format, specs, downloads) and
``convert`` (importers): nothing below imports it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Any

import torch

from segzoo.core.errors import InvalidValueError, MissingFileError, SegzooError, UnknownNameError
from segzoo.core.io import StateFit
from segzoo.core.registry import CONVERTERS, DECODERS, ENCODERS, MODELS
from segzoo.models.factory import apply_overrides, build_model, named_config
from segzoo.models.segmentation_model import SegmentationModel
from segzoo.storage.format import WEIGHTS_NAME, WeightsHeader, read_weights_header, sha256_of, write_weights
from segzoo.storage.specs import WeightSpec, resolve_spec, spec_for, specs_of

__all__ = [
    "create", "hub_entrypoint", "from_pretrained", "resolve_source", "load_weights_into", "list_models",
    "list_encoders", "list_decoders", "list_converters", "model_info", "load", "eval_transform", "HUB_PREFIX",
    "FORMS",
]

HUB_PREFIX = "hf-hub:"
FORMS = (
    "a segzoo .safetensors file, a folder holding model.safetensors, 'hf-hub:org/name', "
    "or a zoo name with an optional tag such as 'unet_carvana.scale0.5'"
)


# -- listing ---------------------------------------------------------------------------------
def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Named models matching the fnmatch ``pattern``, sorted; ``pretrained`` keeps those with published weights.

    Plugin models are listed without importing their plugin.
    """
    names = MODELS.names(pattern)
    if pretrained:
        names = [n for n in names if specs_of(n)]
    return names


def list_encoders(pattern: str = "*") -> list[str]:
    """Encoder names: segzoo's own, plugins' and every timm architecture, matching ``pattern``."""
    return ENCODERS.names(pattern)


def list_decoders(pattern: str = "*") -> list[str]:
    """Decoder names (core and plugins) matching ``pattern``."""
    return DECODERS.names(pattern)


def list_converters(pattern: str = "*") -> list[str]:
    """Importer names (``torchvision``, ``smp``, ``milesial`` and plugins') matching ``pattern``."""
    return CONVERTERS.names(pattern)


def model_info(name: str) -> dict[str, Any]:
    """Config, source package and description of a named model (builds nothing)."""
    entry = MODELS.entry(name)
    config = named_config(name)
    doc = (getattr(entry.obj, "__doc__", None) or "").strip()
    return {
        "name": name,
        "description": doc.split("\n\n", 1)[0].replace("\n", " "),
        "source": entry.source,
        "builder": entry.origin,
        "decoder": config.decoder,
        "encoder": config.encoder.name,
        "num_classes": config.num_classes,
        "pretrained_tags": sorted(specs_of(name)),
        "config": config.to_dict(),
    }


# -- creating --------------------------------------------------------------------------------
def create(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    pretrained: bool | str = False,
    **overrides: Any,
) -> SegmentationModel:
    """Create the named model ``name`` (see ``segzoo.list_models()``), with optional overrides.

    ``segzoo.create('deeplabv3plus_r50', num_classes=19, output_stride=8)``.
    ``pretrained=True`` loads the default published weights, ``pretrained="tag"``
    another tag (``segzoo.model_info(name)["pretrained_tags"]``); overrides then
    re-initialise the layers they change, with a warning.
    """
    # keywords that pick a weights tag, declared where the model is named (unet_carvana's scale=0.5 / 1.0)
    for keyword, tags in (MODELS.entry(name).metadata.get("tag_keywords") or {}).items():
        if keyword not in overrides:
            continue
        value = overrides.pop(keyword)
        if pretrained is not True:
            raise InvalidValueError(f"{keyword}={value!r} chooses {name}'s pretrained weights: pass pretrained=True "
                                    f"with it (or pretrained='<tag>' alone)")
        if value not in tags:
            raise InvalidValueError(f"{name} weights exist for {keyword} {sorted(tags)}, got {keyword}={value!r}")
        pretrained = tags[value]
    if pretrained:
        source = name if pretrained is True else f"{name}.{pretrained}"
        return from_pretrained(source, num_classes=num_classes, in_channels=in_channels, **overrides)
    config = apply_overrides(named_config(name), num_classes=num_classes, in_channels=in_channels, **overrides)
    return build_model(config)


def hub_entrypoint(name: str):
    """The torch.hub entry point of the named model ``name``: ``fn(pretrained=False, **kwargs)`` calling
    :func:`create`, named and documented as the registry's builder (``hubconf.py`` is generated from this)."""
    builder = MODELS.get(name)

    def entrypoint(pretrained: bool | str = False, **kwargs: Any) -> SegmentationModel:
        return create(name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = (builder.__doc__ or f"The named model {name}.") + (
        "\n\n    Keyword arguments are those of ``segzoo.create``; ``pretrained=True`` loads the default published "
        "weights, ``pretrained='tag'`` another tag.")
    return entrypoint


# -- loading ---------------------------------------------------------------------------------
def load_weights_into(model: SegmentationModel, state: dict[str, torch.Tensor], source: str, strict: bool) -> list[str]:
    """Load ``state`` into ``model``.

    ``strict``: every key must match in name and shape, else an error names the first mismatches. Not strict:
    matching tensors are loaded, the rest keep their fresh initialisation and are listed in a warning. Returns
    the names of the tensors that were not loaded.
    """
    own = model.state_dict()
    fit = StateFit.of(own, state)
    if strict and fit.problems():
        raise InvalidValueError(f"weights {source!r} do not fit the model ({type(model).__name__}): {fit.problems()}")
    loadable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict({**own, **loadable}, strict=True)
    dropped = sorted({m.split(":", 1)[0] for m in fit.mismatched} | set(fit.missing))
    if dropped or fit.unexpected:
        warnings.warn(
            f"weights {source!r}: {len(dropped)} tensor(s) re-initialised (changed or new layers): {dropped[:10]}"
            + (f"; {len(fit.unexpected)} unused tensor(s) dropped: {list(fit.unexpected[:10])}"
               if fit.unexpected else ""),
            UserWarning,
            stacklevel=3,
        )
    return dropped


def _split_zoo_name(source: str) -> tuple[str, str | None] | None:
    """``name`` or ``name.tag`` if ``name`` is a registered model, else None."""
    if source in MODELS:
        return source, None
    name, dot, tag = source.partition(".")  # names have no dots; tags may ("scale0.5")
    if dot and name in MODELS:
        return name, tag
    return None


def _spec_importer(spec: WeightSpec):
    """The file-to-file step for a spec published as a foreign checkpoint: the named importer, then segzoo's
    format with the spec's dataset and licence in the metadata."""
    importer = CONVERTERS.get(spec.convert)

    def convert_file(src: Path, dst: Path) -> None:
        model = importer(src)
        model.meta.dataset = spec.dataset or model.meta.dataset
        model.meta.license = spec.license or model.meta.license
        if spec.class_names is not None:
            model.meta = dataclasses.replace(model.meta, class_names=list(spec.class_names))
        write_weights(model, dst)

    return convert_file


def _hub_repo_id(text: str) -> str:
    """The repo id of an ``hf-hub:org/name`` source, checked by the Hub's own rules before any request."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id = text[len(HUB_PREFIX) :]
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise InvalidValueError(f"{text!r}: a Hub source is 'hf-hub:org/name'")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise InvalidValueError(f"{text!r}: {repo_id!r} is not a Hub repo id ('org/name': letters, digits, '-', "
                                f"'_', '.', no '--' or '..'): {exc}") from None
    return repo_id


def _resolve_hub(repo_id: str, hub: dict[str, Any]) -> Path:
    """A Hub repo's segzoo weights: its own ``model.safetensors``, or, for a transformers repo (its
    ``config.json`` names a ``model_type``), its checkpoint converted once and cached as segzoo weights."""
    from segzoo.storage.hub import download_weights, repo_config

    config = repo_config(repo_id, **hub)
    if config is None or "model_type" not in config:
        return download_weights(repo_id, **hub)
    tag = repo_id.replace("/", "--") + (f"@{hub['revision']}" if hub.get("revision") else "")
    spec = WeightSpec(tag, hub=repo_id, convert="transformers", description=f"hf-hub:{repo_id}, converted")
    return resolve_spec("hf-hub", spec, converter=_spec_importer(spec), **hub)


def resolve_source(
    source: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
) -> Path:
    """The local segzoo weights file ``source`` refers to (downloading it if needed)."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise MissingFileError(f"folder {text!r} has no {WEIGHTS_NAME} (the save_pretrained layout)")
        return weights
    if path.is_file():
        return path
    if text.startswith(HUB_PREFIX):
        hub = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only}
        return _resolve_hub(_hub_repo_id(text), hub)
    zoo = _split_zoo_name(text)
    if zoo is not None:
        name, tag = zoo
        spec = spec_for(name, tag)
        return resolve_spec(
            name,
            spec,
            converter=_spec_importer(spec) if spec.convert else None,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
    looks_like_path = any(sep in text for sep in ("/", "\\")) or text.endswith((".safetensors", ".pth"))
    what = "no such file or folder" if looks_like_path else "not a registered model name"
    raise MissingFileError(f"cannot load {text!r} ({what}); accepted forms: {FORMS}")


def _check_plugins(file: WeightsHeader, source: str) -> None:
    """A model built from a plugin's encoder or decoder needs that plugin: say which, before building."""
    registries = {"encoder": ENCODERS, "decoder": DECODERS}
    for need in file.requires:
        registry = registries.get(need.get("kind", ""))
        if registry is not None and need.get("name") not in registry:
            distribution = need.get("distribution", "?")
            raise UnknownNameError(
                f"weights {source!r} are a model built with the {need['kind']} {need.get('name')!r} of the plugin "
                f"{distribution!r} (version {need.get('version', '?')} when saved), which is not installed "
                f"here: pip install {distribution}"
            )


def _check_header_fits(file: WeightsHeader, source: str, strict: bool = True) -> None:
    """The model the header's config describes has exactly the tensors (names and shapes) the header lists;
    not ``strict`` (loading what fits), it may differ, but may not be much larger than the file."""
    from segzoo.models.segmentation_model import SegmentationModel

    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in SegmentationModel(file.config).state_dict().items()}
    except (SegzooError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        # an untrusted header: whatever its values make a builder raise is the file's fault, said as such
        raise InvalidValueError(f"weights {source!r}: the config in the file's header cannot build a model: "
                                f"{type(exc).__name__}: {exc}") from exc
    if not strict:
        ours, theirs = (sum(math.prod(v) for v in table.values()) for table in (shapes, file.shapes))
        if ours <= max(2 * theirs, theirs + 1_000_000):
            return
    mismatched = [f"{k}: config {shapes[k]} vs file {file.shapes[k]}" for k in shapes
                  if k in file.shapes and shapes[k] != file.shapes[k]]
    missing = [k for k in shapes if k not in file.shapes]
    extra = [k for k in file.shapes if k not in shapes]
    if mismatched or missing or extra:
        parts = [f"{len(mismatched)} shape mismatch(es), first: {mismatched[:3]}" if mismatched else "",
                 f"{len(missing)} tensor(s) the config needs but the file lacks, first: {missing[:3]}"
                 if missing else "",
                 f"{len(extra)} tensor(s) the config does not have, first: {extra[:3]}" if extra else ""]
        raise InvalidValueError(f"weights {source!r}: the header's config does not describe the file's tensors "
                                f"({'; '.join(p for p in parts if p)}); the file is corrupt or was edited")


def from_pretrained(
    source: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    strict: bool = True,
    **overrides: Any,
) -> SegmentationModel:
    """Build a model and load its weights from ``source`` (see ``FORMS``).

    ``overrides`` are those of ``segzoo.create`` (``num_classes=``, ``in_channels=``,
    ...): the layers they change are re-initialised, with a warning listing the
    tensors that were not loaded. Without overrides loading is strict.
    """
    overrides = {k: v for k, v in overrides.items() if not (v is None and k in ("num_classes", "in_channels"))}
    weights_path = resolve_source(source, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    file = read_weights_header(weights_path)
    _check_plugins(file, str(source))
    # the header's config decides what building allocates: it must describe the tensors the same header lists
    # (checked on the meta device, where nothing is allocated) before anything real is built or read
    _check_header_fits(file, str(source), strict)
    config = apply_overrides(file.config, **overrides) if overrides else file.config
    # another head: the published class names and colours no longer describe it (dropped together)
    model = build_model(config, file.meta.for_classes(config.num_classes))
    load_weights_into(model, file.load_state_dict(), str(source), strict=strict and not overrides)
    model.loaded_from = {"source": str(source), "sha256": sha256_of(weights_path)}
    return model.eval()


# -- one loader for prediction --------------------------------------------------------------------------------------
EXPORT_SUFFIXES = (".onnx", ".xml", ".pt2")


def _source_path(source: Any) -> Path:
    if not isinstance(source, (str, Path)):
        from segzoo.core.errors import InvalidTypeError

        raise InvalidTypeError(f"a source is a path or a name ({FORMS}, or an exported .onnx / .xml / .pt2), got "
                               f"{type(source).__name__}")
    return Path(source)


def load(source: str | Path) -> Any:
    """Anything segzoo predicts with, ready in eval mode: a weights source (see ``FORMS``), a segzoo ``.onnx`` (fp32
    or INT8, onnxruntime), an OpenVINO ``.xml`` (fp32 or INT8) or a ``.pt2`` program.

    Every kind keeps the predict contract: ``m.predict(images, tile=..., tta=...)`` class ids, ``m.meta`` (classes,
    preprocessing) and ``m.num_classes``; ``m(x)`` returns logits of a normalised float batch. ONNX and OpenVINO
    run on the CPU."""
    from segzoo.inference.runtime import OnnxModel, OpenVinoModel, load_program

    suffix = _source_path(source).suffix.lower()
    if suffix == ".onnx":
        return OnnxModel.load(source)
    if suffix == ".xml":
        return OpenVinoModel.load(source)
    if suffix == ".pt2":
        program = load_program(source)
        if program.num_classes is None:
            raise InvalidValueError(f"{str(source)!r} is a .pt2 program exported before segzoo described its "
                                    "exports: its classes are unknown; export it again with segzoo export")
        return program.eval()
    return from_pretrained(source)


def eval_transform(source: str | Path) -> Any:
    """The evaluation transform that goes with ``source``: the one a training run saved beside the weights
    (``transforms.json``, which may hold only what segzoo writes there), else the default (no resize)."""
    from segzoo.core.io import read_json_file
    from segzoo.data.transforms import eval_preset, eval_preset_from_record

    path = _source_path(source)
    if path.suffix.lower() in EXPORT_SUFFIXES or not path.exists():  # an export, a zoo name, a Hub id
        return eval_preset()
    saved = (path if path.is_dir() else path.parent) / "transforms.json"
    if not saved.is_file():
        return eval_preset()
    return eval_preset_from_record(read_json_file(saved, "evaluation transform", 1 << 16), repr(str(saved)))
