"""Files and the environment: atomic writes (a temporary file in the same folder, then a rename), safe
checkpoint reads, true-ish environment flags, and how a state dict fits a module."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "sha256_of", "atomic_path", "atomic_paths", "atomic_folder", "folder_lock", "RunLock", "exchange_paths",
    "write_error", "new_file_mode", "load_weights_only", "read_safetensors_metadata", "env_flag", "TRUE_VALUES",
    "StateFit", "read_json_file",
]


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def new_file_mode(path: str | Path) -> int:
    """The replaced file's mode, or what ``open`` would give a new file under the umask (mkstemp's is 0600)."""
    path = Path(path)
    if path.exists():
        return path.stat().st_mode & 0o777
    return 0o666 & ~_umask()


def write_error(path: str | Path, exc: OSError) -> Exception:
    """A ``WriteError`` naming ``path`` and the reason ("no space left on device", ...) for an OS error while
    writing it; other errors are returned unchanged."""
    import errno

    from segzoo.core.errors import WriteError

    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EFBIG):
        return exc
    return WriteError(exc.errno, f"cannot write {str(path)!r}: {os.strerror(exc.errno).lower()}; "
                                 "what was there before is unchanged, and no partial output was left")


def check_output(path: str | Path, what: str = "output", *, folder: bool = False, overwrite: bool = False) -> Path:
    """Where a command will write, checked before any work: no parent may be a file, a file output may not be an
    existing folder (``--overwrite`` replaces files, never folders) nor an existing file without ``overwrite``; a
    folder output may not be a file. Each is one error naming the path."""
    from segzoo.core.errors import InvalidValueError, NotAFolderError, OutputExistsError

    path = Path(path)
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise NotAFolderError(f"{what} {str(path)!r} cannot be written: {str(parent)!r} is a file, not a "
                                    "folder")
    if folder and path.exists() and not path.is_dir():
        raise NotAFolderError(f"{what} {str(path)!r} is a file; expected a folder (or a path that does not "
                                "exist yet)")
    if not folder and path.is_dir():
        raise InvalidValueError(f"{what} {str(path)!r} is a folder; expected a file name (--overwrite replaces "
                                "files, never folders)")
    if not folder and path.exists() and not overwrite:
        raise OutputExistsError(f"{what} {str(path)!r} already exists; pass --overwrite to replace it")
    return path


def _place_new(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist, atomically (a concurrent writer of the same name
    loses with ``OutputExistsError``, never overwrites)."""
    from segzoo.core.errors import OutputExistsError

    try:
        try:
            os.link(tmp, path)  # fails if path exists; never replaces
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links: claim the name exclusively, then fill it
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, new_file_mode(path)))
            os.replace(tmp, path)
            return
    except FileExistsError:
        raise OutputExistsError(f"output {str(path)!r} appeared while predicting (another run writing into the "
                                "same folder?); it was left as it is") from None
    tmp.unlink()


@contextlib.contextmanager
def atomic_paths(paths: list[str | Path], replace: bool = True) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of ``paths``; on success each replaces its target (after all were
    written), on failure every temporary file is removed. A crash or exception never leaves a half-written target
    nor clobbers one that was there; a full disk is a ``WriteError`` naming the file. ``replace=False``: a target
    that exists at the moment of writing (another process made it) is an ``OutputExistsError``, and the targets
    this call had placed already are removed again."""
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
        if replace:
            for tmp, path in zip(temps, paths):
                os.replace(tmp, path)
        else:
            _place_all_new(temps, paths)
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


def _place_all_new(temps: list[Path], paths: list[Path]) -> None:
    placed: list[Path] = []
    try:
        for tmp, path in zip(temps, paths):
            _place_new(tmp, path)
            placed.append(path)
    except BaseException:
        for path in placed:
            path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    A crash or exception never leaves a half-written ``path`` nor clobbers the one that was there.
    """
    with atomic_paths([path]) as (tmp,):
        yield tmp


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    platform or file system cannot, so that the caller falls back to two renames."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False


@contextlib.contextmanager
def folder_lock(path: str | Path) -> Iterator[None]:
    """An exclusive OS lock (``flock``) on the folder holding ``path``, held while the block runs: writers of
    folders there take turns instead of mixing their files. It dies with the process (a killed writer leaves no
    stale lock) and leaves no file behind. A no-op where ``fcntl`` does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    parent = Path(path).parent
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def atomic_folder(path: str | Path, keep_others: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` to fill; on success it replaces ``path`` as a whole, on failure it
    is removed. A reader sees the old folder or the complete new one, never a mix: the swap is one atomic
    exchange on Linux (two renames elsewhere, with the old folder kept aside until the new one is in place).
    Concurrent writers of folders in the same parent take turns (:func:`folder_lock`). ``keep_others``: files of
    the old folder that the new one does not write are carried over (hard links), so nothing a user kept there
    is lost."""
    import shutil

    path = Path(path)
    with folder_lock(path):
        # a writer killed between its two renames set the old folder aside: put it back first
        aside = sorted(path.parent.glob(f".{path.name}.*.old/{path.name}"))
        if aside and not path.exists():
            os.replace(aside[-1], path)
        # temporary folders of writers that were killed (under the lock no live writer owns one)
        for stale in [*path.parent.glob(f".{path.name}.*.tmp"), *path.parent.glob(f".{path.name}.*.old")]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            yield tmp
            if keep_others and path.is_dir():
                for old in path.iterdir():
                    target = tmp / old.name
                    if target.exists() or not old.is_file():
                        continue
                    try:
                        os.link(old, target)
                    except OSError:
                        shutil.copy2(old, target)
            for f in tmp.iterdir():
                if f.is_file():
                    with open(f, "rb") as handle:
                        os.fsync(handle.fileno())
            os.chmod(tmp, 0o777 & ~_umask())
            if path.is_dir() and exchange_paths(tmp, path):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
            elif path.is_dir():
                aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                os.replace(path, aside / path.name)
                os.replace(tmp, path)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            error = write_error(path, exc)
            if error is exc:
                raise
            raise error from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


class RunLock:
    """An exclusive, non-blocking OS lock on ``folder`` for as long as this object lives (or until
    :meth:`release`): a second owner gets an error naming the folder and the first owner's pid. The lock is held
    on ``folder/.segzoo.lock`` (which records the pid) with ``flock``: it dies with the process, so a killed
    owner never leaves a stale lock. A no-op where ``fcntl`` does not exist (Windows)."""

    NAME = ".segzoo.lock"

    def __init__(self, folder: str | Path, what: str = "folder") -> None:
        from segzoo.core.errors import InvalidValueError

        self.folder = Path(folder)
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / self.NAME, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InvalidValueError(f"{what} {str(self.folder)!r} is in use by another process (pid {owner}); "
                                    "wait for it to finish, or use another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.release()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def load_weights_only(path: str | Path, what: str = "checkpoint"):
    """``torch.load(path, weights_only=True)`` on the CPU. A refused or unreadable file is an ``InvalidValueError``
    saying in one sentence what, which file and what to do, never PyTorch's advice to switch the safety off."""
    import re

    import torch

    from segzoo.core.errors import InvalidValueError, MissingFileError

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

    from segzoo.core.errors import InvalidValueError, MissingFileError

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weights file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise InvalidValueError(
            f"{str(path)!r} is not a readable safetensors file (truncated or another format): {exc}") from exc


MAX_JSON_DEPTH = 32  # segzoo's own files nest at most 6 deep; the bound only stops hostile nesting


def json_depth(value: Any) -> int:
    """How deeply lists and mappings nest in ``value`` (a scalar: 0), counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(text: str | bytes, what: str, max_bytes: int = 1 << 20, expect: type | None = dict) -> Any:
    """JSON that is untrusted input (a header field, a file's metadata): at most ``max_bytes``, nested at most
    ``MAX_JSON_DEPTH`` deep, of type ``expect`` at the top; anything else is one ``InvalidValueError`` naming
    ``what``."""
    import json

    from segzoo.core.errors import InvalidTypeError, InvalidValueError

    if not isinstance(text, (str, bytes)):
        raise InvalidTypeError(f"{what} must be JSON text, got {type(text).__name__}")
    if len(text) > max_bytes:
        raise InvalidValueError(f"{what} is {len(text)} bytes of JSON, more than the {max_bytes} it may hold")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidValueError(f"{what} is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise InvalidValueError(f"{what} nests lists or mappings {json_depth(data)} deep, more than the "
                                f"{MAX_JSON_DEPTH} segzoo reads")
    if expect is not None and not isinstance(data, expect):
        raise InvalidValueError(f"{what} must hold a JSON {_JSON_NAMES.get(expect, expect.__name__)}, got "
                                f"{type(data).__name__}")
    return data


_JSON_NAMES = {dict: "object", list: "array", str: "string"}


def read_json_file(path: str | Path, what: str, max_bytes: int = 1 << 20) -> dict:
    """A JSON object from a file that is untrusted input (a config beside foreign weights), bounded as
    :func:`parse_json`; anything else is one ``InvalidValueError`` naming the file."""
    from segzoo.core.errors import InvalidValueError, MissingFileError

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {str(path)!r} does not exist")
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidValueError(f"{what} {str(path)!r} is {size} bytes, more than the {max_bytes} such a file holds")
    return parse_json(path.read_bytes(), f"{what} {str(path)!r}", max_bytes)


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
