"""What the table-driven reliability tests share: a snapshot of a folder's files, and a CLI case."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from segzoo.cli import main


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, with its sha256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def cli(*args: str) -> Callable[[Path], int]:
    """A CLI case: ``{w}`` in an argument is the case's folder."""
    return lambda w: main([a.format(w=w) for a in args])
