"""The ``segzoo`` command line: one module per command in ``commands/`` (each registers its options beside its
handler), the demo (demo.py) and the local web app (app.py).
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
