"""The ``segzoo`` command line (commands.py: list, info, convert, train, eval, predict, export, quantize, publish, demo,
bench), prediction on image files (files.py) and ``segzoo demo`` (demo.py).
May import: core, data, layers, encoders, decoders, storage, inference, models, convert, api, deploy, training,
segzoo (the lazy facade: every layer below).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    from segzoo.cli.commands import main as run

    return run(argv)
