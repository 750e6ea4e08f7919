"""A scan of every mask before training starts: all bad files and values reported at once, nothing started.

A bad value found only when its sample happens to be loaded can go unseen for a whole run (a dropped last batch,
a subset), so the Trainer decodes every mask once up front. Files already found good are remembered by path,
size and modification time (per mask encoding) in ``$XDG_CACHE_HOME/segzoo/mask-scans``, so the scan costs a
stat per file after the first run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from segzoo.core.errors import InvalidValueError, SegzooError
from segzoo.core.io import atomic_path
from segzoo.data.masks import MaskDecoder

__all__ = ["scan_masks", "scan_cache_dir"]

SHOWN = 20  # bad files listed in the error (all are counted)


def scan_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "segzoo" / "mask-scans"


def _signature(decoder: MaskDecoder) -> str:
    spec = {"classes": decoder.num_classes, "ignore": decoder.ignore_index,
            "colours": sorted([list(k), v] for k, v in decoder.colours.items()),
            "values": sorted(decoder.values.items())}
    return hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:16]


def scan_masks(masks: Sequence[Path], decoder: MaskDecoder, cache: Path | None = None) -> int:
    """Decode every mask in ``masks`` (skipping files the cache knows to be good); returns how many were decoded.
    Any bad file raises one ``InvalidValueError`` listing every bad file with its problem."""
    cache_file = (cache or scan_cache_dir()) / f"{_signature(decoder)}.json"
    try:
        known = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    except (OSError, ValueError):
        known = {}  # a damaged cache is only a slower scan
    good, bad, decoded = {}, [], 0
    for path in masks:
        key = str(Path(path).resolve())
        try:
            stat = os.stat(key)
        except OSError as exc:
            bad.append(f"{str(path)!r}: cannot be read ({exc.strerror})")
            continue
        stamp = [stat.st_size, stat.st_mtime_ns]
        if known.get(key) == stamp:
            good[key] = stamp
            continue
        decoded += 1
        try:
            decoder(Path(path))
        except SegzooError as exc:
            bad.append(str(exc))
            continue
        good[key] = stamp
    if good != known:
        try:
            with atomic_path(cache_file) as tmp:
                tmp.write_text(json.dumps({**known, **good}))
        except OSError:
            pass  # a read-only cache only costs time
    if bad:
        listed = "\n  ".join(bad[:SHOWN])
        more = f"\n  ... and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        raise InvalidValueError(f"{len(bad)} of {len(masks)} masks are unusable; nothing was started:\n  "
                                f"{listed}{more}")
    return decoded
