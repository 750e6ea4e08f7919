"""The ``segzoo`` command line: one module per command, each registering its options next to its handler
(``register(sub)`` and ``run(args)``); ``segzoo bench`` runs the repository's benchmark suite."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from segzoo.cli.commands.info import count_flops

__all__ = ["main", "build_parser", "count_flops", "COMMANDS"]

# command -> its module, in the order ``segzoo --help`` lists them (``list`` and ``eval`` would shadow builtins)
COMMANDS = {"list": "listing", "info": "info", "convert": "convert", "train": "train", "eval": "evaluate",
            "predict": "predict", "publish": "publish", "export": "export", "quantize": "quantize", "prune": "prune",
            "demo": "demo", "app": "app"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segzoo", description="Semantic-segmentation model zoo for PyTorch.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    for module in COMMANDS.values():  # light modules: each imports what its command needs when it runs
        importlib.import_module(f"{__name__}.{module}").register(sub)
    sub.add_parser("bench", help="benchmark segzoo against smp / torchvision (segzoo bench --help)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the suite has its own options, and lives in the repository's benchmarks/
        try:
            from benchmarks.suite import main as bench_main
        except ModuleNotFoundError as exc:
            if exc.name not in ("benchmarks", "benchmarks.suite"):
                raise
            print("segzoo bench: error: the benchmark suite lives in the repository's benchmarks/ folder: run it "
                  "from a checkout (python -m benchmarks, or segzoo bench in the checkout's root)", file=sys.stderr)
            return 2
        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from segzoo._version import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    from segzoo.core.errors import SegzooError

    try:
        return int(args.func(args))
    except SegzooError as exc:  # a user's mistake: one line; anything else is a bug and keeps its traceback
        print(f"segzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
