"""Progress for long commands: a tqdm bar on a terminal, a plain line every so often otherwise (a log file, CI),
so that a seven-minute evaluation never prints nothing until it ends."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO, TypeVar

__all__ = ["progress"]

T = TypeVar("T")


def progress(items: Iterable[T], total: int, what: str, *, enabled: bool = True, stream: TextIO | None = None,
             every_s: float = 10.0, size: Callable[[T], int] = lambda item: 1, unit: str = "images") -> Iterator[T]:
    """Yield ``items`` while reporting ``done of total <what>``: tqdm when ``stream`` (stderr) is a terminal, else
    a line at the first item, every ``every_s`` seconds and at the end. ``size(item)`` is how many units an item
    counts for (the images of a batch). ``enabled=False`` reports nothing."""
    stream = sys.stderr if stream is None else stream
    if not enabled:
        yield from items
        return
    if stream.isatty():
        from tqdm.auto import tqdm

        with tqdm(total=total, desc=what, unit=unit, file=stream, leave=False) as bar:
            for item in items:
                yield item
                bar.update(size(item))
        return
    start = last = time.monotonic()
    done, reported = 0, False
    for item in items:
        yield item
        done += size(item)
        now = time.monotonic()
        if not reported or done >= total or now - last >= every_s:
            rate = done / max(now - start, 1e-9)
            left = max(total - done, 0) / rate if rate > 0 else 0.0
            print(f"{what}: {done} of {total} {unit} ({rate:.1f}/s, ~{left:.0f} s left)", file=stream, flush=True)
            last, reported = now, True
