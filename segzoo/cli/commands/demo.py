"""``segzoo demo``: synthetic data, about a minute of training, evaluation, predictions, plots."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic data, about a minute of training, evaluation, predictions, plots")
    p.add_argument("--output", "-o", help="folder for everything (default: a new temporary folder)")
    p.add_argument("--seconds", type=float, default=60.0, help="training time budget")
    p.add_argument("--images", type=int, default=240, help="synthetic images to generate")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segzoo.cli.demo import run_demo

    run_demo(args.output, seconds=args.seconds, n_images=args.images)
    return 0
