"""The segzoo weights file: a safetensors file whose header describes the model completely.

Header metadata (all strings):

``segzoo.config``   the ModelConfig as JSON: enough to rebuild the architecture
``segzoo.meta``     class names, preprocessing (mean / std / input range), dataset, metrics, licence
``segzoo.version``  the segzoo version that wrote the file
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from segzoo._version import __version__
from segzoo.core.config import DescribedModel, ModelConfig, ModelMeta, parse_config
from segzoo.core.errors import InvalidValueError
from segzoo.core.io import atomic_path, parse_json, read_safetensors_metadata, sha256_of

__all__ = [
    "WEIGHTS_NAME", "REQUIRES_KEY", "plugin_requirements",
    "WeightsFile", "WeightsHeader", "write_weights", "read_weights", "read_weights_header",
    "FORBIDDEN_ENCODER_PARAMS", "sha256_of", "standalone", "CONFIG_KEY", "META_KEY", "VERSION_KEY",
]

WEIGHTS_NAME = "model.safetensors"  # the weights file of a save_pretrained folder and of a checkpoint
CONFIG_KEY = "segzoo.config"
META_KEY = "segzoo.meta"
VERSION_KEY = "segzoo.version"
REQUIRES_KEY = "segzoo.requires"  # the plugin distributions whose encoder / decoder the model is built from


@dataclass
class WeightsFile:
    """What a segzoo weights file holds."""

    config: ModelConfig
    meta: ModelMeta
    state_dict: dict[str, torch.Tensor]
    version: str
    path: Path
    requires: list[dict[str, str]] = field(default_factory=list)  # see plugin_requirements


def plugin_requirements(config: ModelConfig) -> list[dict[str, str]]:
    """The encoder and decoder of ``config`` that come from neither segzoo nor timm: kind, name, the
    distribution that registered it and its installed version. Written into every weights file, so that
    loading one without the plugin names what to install."""
    from importlib import metadata

    from segzoo.core.registry import CORE_SOURCE, DECODERS, ENCODERS

    found = []
    for kind, registry, name in (("encoder", ENCODERS, config.encoder.name), ("decoder", DECODERS, config.decoder)):
        entry = registry.entry(name)
        fallback = registry.fallback.source if registry.fallback is not None else None
        if entry.source in (CORE_SOURCE, fallback):
            continue
        try:
            version = metadata.version(entry.source)
        except metadata.PackageNotFoundError:  # registered in-process by a module that is not a distribution
            version = "?"
        found.append({"kind": kind, "name": name, "distribution": entry.source, "version": version})
    return found


def standalone(config: ModelConfig, meta: ModelMeta) -> tuple[ModelConfig, ModelMeta]:
    """The config and meta a weights file stores: the encoder's initial weights move from the config (what
    rebuilding needs) to the meta (provenance), so that loading the file never reads another file, URL or Hub
    entry. Files written before this rule are read through it too."""
    if config.encoder.weights is None:
        return config, meta
    meta = ModelMeta.from_dict(meta.to_dict())
    meta.encoder_weights = meta.encoder_weights or config.encoder.weights
    return dataclasses.replace(config, encoder=dataclasses.replace(config.encoder, weights=None)), meta


def write_weights(
    model: DescribedModel, path: str | Path, meta: ModelMeta | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write ``model`` (a DescribedModel) to a self-describing safetensors file, atomically.

    ``dtype`` (e.g. ``torch.float16``) stores floating-point tensors at that precision; loading casts them back
    to the model's dtype.
    """
    from safetensors.torch import save

    meta = meta if meta is not None else model.meta
    meta.check(model.config.num_classes)
    config, meta = standalone(model.config, meta)
    for key, value in model.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InvalidValueError(f"tensor {key!r} holds NaN or infinite values; refusing to write {str(path)!r} "
                                    "(the model diverged: keep the previous checkpoint)")
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().to("cpu").contiguous()
        for k, v in model.state_dict().items()
    }
    header = {
        "format": "pt",
        CONFIG_KEY: config.to_json(),
        META_KEY: json.dumps(meta.to_dict()),
        VERSION_KEY: __version__,
        REQUIRES_KEY: json.dumps(plugin_requirements(config)),
    }
    path = Path(path)
    data = save(state, metadata=header)  # serialised in memory, written by Python: a full disk is an OSError
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def read_header(path: Path) -> dict[str, str]:
    """The header metadata of a safetensors file (see ``segzoo.core.io.read_safetensors_metadata``)."""
    return read_safetensors_metadata(path)


# encoder builder parameters a weights file may not carry: each makes building read another file or the network
# (timm's checkpoint_path, pretrained weights, their config); loading a segzoo file reads that file and nothing else
FORBIDDEN_ENCODER_PARAMS = ("checkpoint_path", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay",
                            "pretrained_strict", "cache_dir")


@dataclass
class WeightsHeader:
    """What a segzoo weights file's header says, read without loading a tensor: the model, its metadata and the
    name, shape and dtype of every tensor (how much memory loading it will take)."""

    config: ModelConfig
    meta: ModelMeta
    shapes: dict[str, tuple[int, ...]]
    version: str
    path: Path
    requires: list[dict[str, str]] = field(default_factory=list)

    def load_state_dict(self) -> dict[str, torch.Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(self.path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InvalidValueError(f"{str(self.path)!r}: cannot read its tensors (truncated?): {exc}") from exc


def _header_error(path: Path, what: str) -> InvalidValueError:
    return InvalidValueError(f"{str(path)!r}: invalid segzoo header: {what}")


def read_weights_header(path: str | Path) -> WeightsHeader:
    """Read and check a segzoo weights file's header (no tensor is loaded). A plain state dict, a malformed value
    (wrong type, odd nesting, an encoder parameter that would read another file) is an error naming the file and
    the key."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    header = read_header(path)
    if CONFIG_KEY not in header:
        raise InvalidValueError(
            f"{str(path)!r} is a safetensors file without a segzoo config in its header (key {CONFIG_KEY!r}): "
            "a plain state dict. Load it as encoder_weights=..., or convert it with segzoo.convert"
        )
    where = f"{str(path)!r}: invalid segzoo header:"
    config = ModelConfig.from_json(header[CONFIG_KEY], f"{where} {CONFIG_KEY!r}")
    forbidden = sorted(set(config.encoder.params) & set(FORBIDDEN_ENCODER_PARAMS))
    if forbidden:
        raise _header_error(path, f"the encoder parameters {forbidden} would make loading read other files or the "
                                  "network; a segzoo weights file must hold every tensor itself")
    meta = parse_config(ModelMeta, parse_json(header.get(META_KEY, "{}"), f"{where} {META_KEY!r}"),
                        f"{where} {META_KEY!r}")
    requires = parse_json(header.get(REQUIRES_KEY, "[]"), f"{where} {REQUIRES_KEY!r}", 1 << 16, list)
    if not all(isinstance(r, dict) and all(isinstance(v, str) for v in r.values()) for r in requires):
        raise _header_error(path, f"{REQUIRES_KEY!r}: expected a list of mappings of strings, got {requires!r}"[:300])
    try:
        meta.check(config.num_classes)
    except InvalidValueError as exc:
        raise _header_error(path, str(exc)) from exc
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InvalidValueError(f"{str(path)!r} is not a readable safetensors file: {exc}") from exc
    config, meta = standalone(config, meta)
    return WeightsHeader(config, meta, shapes, header.get(VERSION_KEY, "?"), path, requires)


def read_weights(path: str | Path) -> WeightsFile:
    """Read a segzoo weights file (header checked by :func:`read_weights_header`, then every tensor)."""
    head = read_weights_header(path)
    return WeightsFile(head.config, head.meta, head.load_state_dict(), head.version, head.path, head.requires)
