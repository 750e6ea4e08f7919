"""Atomic file writes: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "load_weights_only"]


def _mode_for(path: Path) -> int:
    """The replaced file's mode, or what ``open`` would give a new file (mkstemp's is 0600)."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    A crash or exception never leaves a half-written ``path`` nor clobbers the one that was there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, _mode_for(path))
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


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
