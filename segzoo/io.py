"""Files and the environment: atomic writes (a temporary file in the same folder, then a rename), safe
checkpoint reads, true-ish environment flags, and how a state dict fits a module."""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

if TYPE_CHECKING:
    import torch

__all__ = ["atomic_path", "atomic_paths", "write_error", "new_file_mode", "load_weights_only", "read_safetensors_metadata", "env_flag", "TRUE_VALUES", "StateFit"]


def new_file_mode(path: str | Path) -> int:
    """The replaced file's mode, or what ``open`` would give a new file under the umask (mkstemp's is 0600)."""
    path = Path(path)
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_error(path: str | Path, exc: OSError) -> Exception:
    """A ``WriteError`` naming ``path`` and the reason ("no space left on device", ...) for an OS error while
    writing it; other errors are returned unchanged."""
    import errno

    from segzoo.errors import WriteError

    if isinstance(exc, WriteError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS,
                                                        errno.EFBIG):
        return exc
    return WriteError(exc.errno, f"cannot write {str(path)!r}: {os.strerror(exc.errno).lower()}; "
                                 "what was there before is unchanged")


@contextlib.contextmanager
def atomic_paths(paths: list[str | Path]) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of ``paths``; on success each replaces its target (after all were
    written), on failure every temporary file is removed. A crash or exception never leaves a half-written target
    nor clobbers one that was there; a full disk is a ``WriteError`` naming the file."""
    paths = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            temps.append(Path(tmp))
        yield temps
        for tmp, path in zip(temps, paths):
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, new_file_mode(path))
        for tmp, path in zip(temps, paths):
            os.replace(tmp, path)
    except OSError as exc:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        culprit = next((p for t, p in zip(temps, paths) if exc.filename in (str(t), str(p))), paths[0])
        error = write_error(culprit, exc)
        if error is exc:
            raise
        raise error from exc
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    A crash or exception never leaves a half-written ``path`` nor clobbers the one that was there.
    """
    with atomic_paths([path]) as (tmp,):
        yield tmp


def load_weights_only(path: str | Path, what: str = "checkpoint"):
    """``torch.load(path, weights_only=True)`` on the CPU. A refused or unreadable file is an ``InvalidValueError``
    saying in one sentence what, which file and what to do, never PyTorch's advice to switch the safety off."""
    import re

    import torch

    from segzoo.errors import InvalidValueError, MissingFileError

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {str(path)!r} does not exist")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (corrupt zip), EOFError, ...
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found:
            reason = (f"it holds a Python object ({found.group(1)}) that segzoo will not unpickle, since that could "
                      "run arbitrary code; re-save its tensors as a plain state dict or .safetensors from code you "
                      "trust")
        else:
            reason = "it is not a readable PyTorch file (truncated, corrupt or another format)"
        raise InvalidValueError(f"{what} {str(path)!r} was refused by torch.load(weights_only=True): {reason}"
                                ) from exc


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` file's header (no tensor is read); an unreadable file is an
    ``InvalidValueError`` naming it."""
    from safetensors import SafetensorError, safe_open

    from segzoo.errors import InvalidValueError, MissingFileError

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weights file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise InvalidValueError(
            f"{str(path)!r} is not a readable safetensors file (truncated or another format): {exc}") from exc


TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to a true-ish value (1, true, yes, on), read now."""
    return os.environ.get(name, "").strip().lower() in TRUE_VALUES


@dataclass(frozen=True)
class StateFit:
    """How a state dict fits a module's: the one comparison behind every weights loader's error message."""

    missing: tuple[str, ...]  # the module needs them, the state lacks them
    unexpected: tuple[str, ...]  # the state has them, the module does not
    mismatched: tuple[str, ...]  # both have them, shapes differ ("name: state (..) vs module (..)")

    @classmethod
    def of(cls, own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
           optional: Callable[[str], bool] = lambda key: False) -> StateFit:
        return cls(
            tuple(k for k in own if k not in state and not optional(k)),
            tuple(k for k in state if k not in own),
            tuple(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape),
        )

    def problems(self, unexpected: bool = True) -> str:
        """The first few of each kind, or '' when the state fits (``unexpected=False`` ignores extra keys)."""
        parts = []
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} shape mismatch(es), first: {list(self.mismatched[:5])}")
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s), first: {list(self.missing[:5])}")
        if unexpected and self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s), first: {list(self.unexpected[:5])}")
        return "; ".join(parts)
