"""``from_pretrained``: a model from a file, a folder, the Hugging Face Hub or a zoo name."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from segzoo.errors import InvalidValueError, MissingFileError
from segzoo.models.factory import apply_overrides, build_model
from segzoo.pretrained.format import WeightsFile, read_weights
from segzoo.pretrained.save import WEIGHTS_NAME

__all__ = ["from_pretrained", "load_weights_into", "HUB_PREFIX"]

HUB_PREFIX = "hf-hub:"
FORMS = (
    "a segzoo .safetensors file, a folder holding model.safetensors, 'hf-hub:org/name', "
    "or a zoo name with an optional tag such as 'unet_carvana.scale0.5'"
)


def load_weights_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, strict: bool) -> list[str]:
    """Load ``state`` into ``model``.

    ``strict``: every key must match in name and shape, else a ``ValueError``
    names the first mismatches. Not strict: matching tensors are loaded, the rest
    keep their fresh initialisation and are listed in a warning. Returns the
    names of the tensors that were not loaded.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    if strict and (missing or unexpected or mismatched):
        parts = []
        if mismatched:
            parts.append(
                "shape mismatches: "
                + ", ".join(f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:5])
            )
        if missing:
            parts.append(f"{len(missing)} missing key(s), first {missing[:5]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), first {unexpected[:5]}")
        raise InvalidValueError(f"weights {source!r} do not fit the model ({type(model).__name__}): " + "; ".join(parts))
    loadable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict({**own, **loadable}, strict=True)
    dropped = sorted(set(mismatched) | set(missing))
    if dropped or unexpected:
        warnings.warn(
            f"weights {source!r}: {len(dropped)} tensor(s) re-initialised (changed or new layers): {dropped[:10]}"
            + (f"; {len(unexpected)} unused tensor(s) dropped: {unexpected[:10]}" if unexpected else ""),
            UserWarning,
            stacklevel=3,
        )
    return dropped


def _split_zoo_name(source: str) -> tuple[str, str | None] | None:
    """``name`` or ``name.tag`` if ``name`` is a registered model, else None."""
    from segzoo.registry import MODELS

    if source in MODELS:
        return source, None
    name, dot, tag = source.partition(".")  # names have no dots; tags may ("scale0.5")
    if dot and name in MODELS:
        return name, tag
    return None


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
        from segzoo.pretrained.hub import download_weights

        repo_id = text[len(HUB_PREFIX) :]
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise InvalidValueError(f"{text!r}: a Hub source is 'hf-hub:org/name'")
        return download_weights(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    zoo = _split_zoo_name(text)
    if zoo is not None:
        from segzoo.convert import converter_for
        from segzoo.pretrained.specs import resolve_spec, spec_for

        name, tag = zoo
        spec = spec_for(name, tag)
        return resolve_spec(
            name,
            spec,
            converter=converter_for(spec.convert) if spec.convert else None,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
    looks_like_path = any(sep in text for sep in ("/", "\\")) or text.endswith((".safetensors", ".pth"))
    what = "no such file or folder" if looks_like_path else "not a registered model name"
    raise MissingFileError(f"cannot load {text!r} ({what}); accepted forms: {FORMS}")


def from_pretrained(
    source: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    strict: bool = True,
    **overrides: Any,
) -> torch.nn.Module:
    """Build a model and load its weights from ``source`` (see ``FORMS``).

    ``overrides`` are those of ``segzoo.create`` (``num_classes=``, ``in_channels=``,
    ...): the layers they change are re-initialised, with a warning listing the
    tensors that were not loaded. Without overrides loading is strict.
    """
    overrides = {k: v for k, v in overrides.items() if not (v is None and k in ("num_classes", "in_channels"))}
    weights_path = resolve_source(source, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    file: WeightsFile = read_weights(weights_path)
    config = apply_overrides(file.config, **overrides) if overrides else file.config
    meta = file.meta
    if config.num_classes != file.config.num_classes and meta.class_names is not None:
        meta.class_names = None  # the published names no longer describe the new head
    model = build_model(config)
    model.meta = meta
    load_weights_into(model, file.state_dict, str(source), strict=strict and not overrides)
    return model.eval()
