"""``segzoo publish``: publish a training run as zoo weights (file, card, picture, manifest row)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("publish", help="publish a training run as zoo weights (file, card, picture, manifest row)")
    p.add_argument("run", help="a training output folder (its best/ checkpoint is published)")
    p.add_argument("--model", required=True, help="the named model the run trained, e.g. deeplabv3plus_mnv2")
    p.add_argument("--tag", required=True, help="the weights tag, e.g. camvid")
    p.add_argument("--recipe", required=True, help="the run's recipe (its validation split is evaluated)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--dataset", required=True, help="data and split, for the card and manifest")
    p.add_argument("--license", required=True, help="licence of the weights, naming the data's and the backbone's")
    p.add_argument("--command", dest="command_line", required=True, help="the exact training command")
    p.add_argument("--metric", default="miou", help="headline metric: miou, dice:<class> or iou:<class>")
    p.add_argument("--image-size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"),
                   help="input size the CPU latency is measured at")
    p.add_argument("--train-seconds", type=float, help="training wall time (default: the run's summary.json)")
    p.add_argument("--machine", default="", help="the machine the run trained on, for the card")
    p.add_argument("--notes", default="", help="a paragraph for the card's training section")
    p.add_argument("--out", help="weights folder (default: the repository's weights/)")
    p.add_argument("--fp32", action="store_true", help="store fp32 even when fp16 keeps the metric")
    p.add_argument("--overwrite", action="store_true", help="replace weights already published under this tag")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segzoo.training.publish import PublishInfo, publish
    from segzoo.training.recipe import Recipe

    recipe = Recipe.load(args.recipe, args.set)
    summary = Path(args.run) / "summary.json"
    seconds = args.train_seconds
    if seconds is None and summary.is_file():
        seconds = json.loads(summary.read_text()).get("seconds")
    info = PublishInfo(dataset=args.dataset, license=args.license, command=args.command_line, train_seconds=seconds,
                       machine=args.machine, image_size=tuple(args.image_size), metric=args.metric,
                       notes=args.notes, recipe=args.recipe)
    entry = publish(args.run, args.model, args.tag, recipe, info, out_dir=args.out, fp16=not args.fp32,
                    overwrite=args.overwrite)
    print(json.dumps({k: entry[k] for k in ("file", "sha256", "size", "storage")}, indent=2))
    return 0
