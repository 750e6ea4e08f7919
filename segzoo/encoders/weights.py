"""Reading encoder weights from local files, offline."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from segzoo.core.config import Preprocessing
from segzoo.core.errors import InvalidValueError, MissingFileError
from segzoo.core.io import StateFit, load_weights_only, read_safetensors_metadata

__all__ = [
    "read_state_dict", "load_pickled_state", "load_encoder_state", "load_encoder_file", "resolve_encoder_weights",
    "encoder_weights_dirs", "weights_preprocessing", "WEIGHTS_ENV",
]

WEIGHTS_ENV = "SEGZOO_WEIGHTS"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def encoder_weights_dirs() -> list[Path]:
    """Where named encoder weights are looked for: each folder of ``$SEGZOO_WEIGHTS`` (``os.pathsep``-separated),
    then torch.hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``)."""
    folders = [Path(p).expanduser() for p in os.environ.get(WEIGHTS_ENV, "").split(os.pathsep) if p]
    return folders + [Path(torch.hub.get_dir()) / "checkpoints"]


def resolve_encoder_weights(entry: str | os.PathLike) -> Path:
    """The local file that encoder weights ``entry`` names: an existing path, or a name such as
    ``mobilenetv2_100.coral_in1k`` found as ``<name>.safetensors`` (or ``.pth`` ...) in
    :func:`encoder_weights_dirs`. Not found: ``FileNotFoundError`` listing every place looked at."""
    path = Path(os.path.expandvars(str(entry))).expanduser()
    if path.is_file():
        return path
    # a name, or a path from another machine: look for its file name in the weights folders
    names = [path.name] if path.suffix in WEIGHT_SUFFIXES else [path.name + suffix for suffix in WEIGHT_SUFFIXES]
    folders = encoder_weights_dirs()
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    looked = ([str(path)] if len(path.parts) > 1 else []) + [str(f) for f in folders]
    raise MissingFileError(
        f"encoder weights {str(entry)!r} not found; looked for {names[0]!r} in {looked}. Give a file path, "
        f"or put the file in a folder named by ${WEIGHTS_ENV}"
    )


def load_pickled_state(path: Path) -> object:
    """``torch.load(weights_only=True)`` of a checkpoint, unwrapped from a ``state_dict`` / ``model`` entry.

    A file that needs arbitrary code to unpickle is refused with an error naming it.
    """
    obj = load_weights_only(path, "checkpoint")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a plain ``.pth`` / ``.pt`` / ``.bin`` state dict.

    ``.pth`` files are read with ``torch.load(weights_only=True)``: a file that
    needs arbitrary code to unpickle is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InvalidValueError(f"{str(path)!r} is not a readable safetensors file: {exc}") from exc
    if path.suffix not in {".pth", ".pt", ".bin", ".ckpt"}:
        raise InvalidValueError(
            f"weights file {str(path)!r}: expected a .safetensors or .pth/.pt/.bin state dict, got {path.suffix!r}"
        )
    obj = load_pickled_state(path)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        bad = type(obj).__name__ if not isinstance(obj, dict) else "a dict with non-tensor values"
        raise InvalidValueError(f"{str(path)!r} holds {bad}, expected a state dict of tensors")
    return obj


def load_encoder_state(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load ``state`` into ``module``; keys the module lacks (a classifier head, say) are ignored.

    Every tensor the module needs must be present with the right shape, else a
    ``ValueError`` names the first missing or mismatched keys. Returns the ignored
    keys, which are also reported in a warning.
    """
    own = module.state_dict()
    # BatchNorm step counters are bookkeeping, absent from many published files: keep the module's own
    fit = StateFit.of(own, state, optional=lambda key: key.endswith("num_batches_tracked"))
    problems = fit.problems(unexpected=False)
    if problems:
        raise InvalidValueError(f"weights {source!r} do not fit the encoder: {problems}")
    ignored = sorted(fit.unexpected)
    module.load_state_dict({k: state.get(k, own[k]) for k in own}, strict=True)
    if ignored:
        warnings.warn(
            f"encoder weights {source!r}: ignored {len(ignored)} tensor(s) the encoder does not use "
            f"(e.g. a classifier head): {ignored[:8]}{' ...' if len(ignored) > 8 else ''}",
            UserWarning,
            stacklevel=3,
        )
    return ignored


SEGZOO_ENCODER_PREFIX = "encoder."
# storage.format.META_KEY (tested equal): encoders sit below storage and must not import it
SEGZOO_META_KEY = "segzoo.meta"


def _floats(text: str, path: Path, key: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InvalidValueError(f"encoder weights {str(path)!r}: header key {key!r} is {text!r}, expected "
                                "comma-separated numbers such as '0.5,0.5,0.5'") from None


def weights_preprocessing(path: str | Path) -> Preprocessing | None:
    """The input normalisation that a weights file's header states, or None where it states none.

    Read from a plain safetensors file's ``input_mean`` / ``input_std`` (comma-separated, on the 0..1 scale, as
    the offline ImageNet files carry them), or from a segzoo weights file's preprocessing. ``.pth`` files carry
    no header: None.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        return None
    header = read_safetensors_metadata(path)
    if SEGZOO_META_KEY in header:
        try:
            meta = json.loads(header[SEGZOO_META_KEY])
            return Preprocessing.from_dict(meta["preprocessing"]) if "preprocessing" in meta else None
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidValueError(f"encoder weights {str(path)!r}: header key {SEGZOO_META_KEY!r} holds no "
                                    f"valid preprocessing: {exc}") from exc
    if "input_mean" not in header and "input_std" not in header:
        return None
    missing = [k for k in ("input_mean", "input_std") if k not in header]
    if missing:
        raise InvalidValueError(f"encoder weights {str(path)!r}: header states one of input_mean / input_std "
                                f"but not {missing[0]!r}")
    return Preprocessing(_floats(header["input_mean"], path, "input_mean"),
                         _floats(header["input_std"], path, "input_std"))


def load_encoder_file(encoder: nn.Module, backbone: nn.Module, entry: str) -> list[str]:
    """Load encoder weights from ``entry`` (a path or a name, see :func:`resolve_encoder_weights`): a segzoo
    weights file (its ``encoder.*`` tensors, into ``encoder``) or a backbone state dict such as timm's (into
    ``backbone``). Other tensors are ignored and reported. The normalisation the file's header states becomes
    ``encoder.preprocessing`` (see :func:`weights_preprocessing`)."""
    path = str(resolve_encoder_weights(entry))
    state = read_state_dict(path)
    encoder.preprocessing = weights_preprocessing(path)
    if any(k.startswith(SEGZOO_ENCODER_PREFIX) for k in state):
        n = len(SEGZOO_ENCODER_PREFIX)
        own = {k[n:]: v for k, v in state.items() if k.startswith(SEGZOO_ENCODER_PREFIX)}
        rest = {k: v for k, v in state.items() if not k.startswith(SEGZOO_ENCODER_PREFIX)}
        return load_encoder_state(encoder, {**own, **rest}, path)
    return load_encoder_state(backbone, state, path)
