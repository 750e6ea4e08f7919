"""A scan of every mask before training starts: all bad files and values reported at once, nothing started.

A bad value found only when its sample happens to be loaded can go unseen for a whole run (a dropped last batch,
a subset), so the Trainer decodes every mask once up front. The scan also counts each class's pixels, so that a
class no mask holds (most often a 0/255 mask whose 255 is the ignore index) is said before any training, not
found out from a model that learnt background alone. Files already scanned are remembered by path, size and
modification time (per mask encoding), with their class counts, in ``$XDG_CACHE_HOME/segzoo/mask-scans``, so the
scan costs a stat per file after the first run.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segzoo.core.errors import InvalidValueError, SegzooError
from segzoo.core.io import atomic_path
from segzoo.data.config import DataConfig
from segzoo.data.masks import MaskDecoder

__all__ = ["MaskScan", "scan_masks", "scan_cache_dir"]

SHOWN = 20  # bad files listed in the error (all are counted)


def scan_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "segzoo" / "mask-scans"


def _signature(decoder: MaskDecoder) -> str:
    spec = {"classes": decoder.num_classes, "ignore": decoder.ignore_index,
            "colours": sorted([list(k), v] for k, v in decoder.colours.items()),
            "values": sorted(decoder.values.items()), "counts": 1}
    return hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MaskScan:
    """What a scan saw: how many masks it decoded (the rest came from the cache), and for each mask the pixels of
    each class id, then of the ignore index."""

    decoded: int
    per_mask: Mapping[Path, tuple[int, ...]]

    def check_classes(self, data: DataConfig, split: str, masks: Sequence[Path] | None = None) -> None:
        """Refuse a split (``masks``, default all scanned) in which at most one class occurs (nothing to learn but
        that class), and warn about each class that no mask holds; where the ignore index is what hides a class,
        the message gives the value map that fixes it."""
        classes, ignore_index = data.classes, data.ignore_index
        chosen = list(self.per_mask) if masks is None else [Path(m) for m in masks]
        if len(classes) < 2 or not chosen:
            return
        total = np.sum([self.per_mask[m] for m in chosen], axis=0, dtype=np.int64)
        counts, ignored = total[:-1], int(total[-1])
        absent = [i for i, n in enumerate(counts) if n == 0]
        if not absent:
            return
        named = ", ".join(f"{classes[i]!r} (id {i})" for i in absent)
        where = f"the {len(chosen)} {split} masks"
        present = [i for i, n in enumerate(counts) if n]
        if len(present) > 1:
            warnings.warn(f"class(es) {named} occur in none of {where}: the model cannot learn them; check "
                          "data.classes and how the masks encode classes (data.values / data.colours)",
                          UserWarning, stacklevel=2)
            return
        only = f"class {classes[present[0]]!r} (id {present[0]})" if present else "no class"
        message = f"{where} hold {only} and no pixel of {named}, so training would learn nothing else"
        if ignored:
            message += (f"; {ignored} pixels are {ignore_index}, the ignore index (data.ignore_index), which "
                        "losses and metrics skip")
            if not data.values and not data.colours:  # class-id masks read as they are
                message += (f". If {ignore_index} marks {classes[absent[0]]!r}, map it: data.values: "
                            f"{{{present[0] if present else 0}: {present[0] if present else 0}, {ignore_index}: "
                            f"{absent[0]}}}")
        raise InvalidValueError(message)


def scan_masks(masks: Sequence[Path], decoder: MaskDecoder, cache: Path | None = None) -> MaskScan:
    """Decode every mask in ``masks`` (taking files the cache knows, with their class counts, from it). Any bad
    file raises one ``InvalidValueError`` listing every bad file with its problem."""
    cache_file = (cache or scan_cache_dir()) / f"{_signature(decoder)}.json"
    known = _read_cache(cache_file, decoder.num_classes)
    good, bad, decoded, per_mask = {}, [], 0, {}
    for path in masks:
        key = str(Path(path).resolve())
        try:
            stat = os.stat(key)
        except OSError as exc:
            bad.append(f"{str(path)!r}: cannot be read ({exc.strerror})")
            continue
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = known.get(key)
        if entry is None or entry[:2] != stamp:
            decoded += 1
            try:
                ids = decoder(Path(path))
            except SegzooError as exc:
                bad.append(str(exc))
                continue
            entry = stamp + _class_counts(ids, decoder).tolist()
        good[key] = entry
        per_mask[Path(path)] = tuple(entry[2:])
    if any(known.get(key) != entry for key, entry in good.items()):
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
    return MaskScan(decoded, per_mask)


def _class_counts(ids: np.ndarray, decoder: MaskDecoder) -> np.ndarray:
    counts = np.bincount(ids.ravel(), minlength=256)
    return np.append(counts[: decoder.num_classes], counts[decoder.ignore_index])


def _read_cache(path: Path, num_classes: int) -> dict[str, list[int]]:
    """The cache's entries that have the expected shape; anything else in the file (it is only a cache, and a
    file) is dropped, costing a decode."""
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    width = 2 + num_classes + 1
    return {key: entry for key, entry in data.items()
            if isinstance(entry, list) and len(entry) == width
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in entry)}
