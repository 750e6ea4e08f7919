"""``segzoo train``: train from a YAML recipe (torchrun --nproc_per_node=N -m segzoo train ... for DDP)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train from a YAML recipe "
                                     "(torchrun --nproc_per_node=N -m segzoo train ... for DDP)")
    p.add_argument("recipe", help="a recipe file, or a bundled recipe name (camvid, nuclei, aerial)")
    p.add_argument("--output", "-o", default="runs/train", help="output folder (checkpoints, logs, plots)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a recipe value")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="fine-tune these trained weights (zoo name such as deeplabv3plus_mnv2.camvid, file or "
                        "folder) instead of the recipe's model: every tensor but a re-sized head is loaded, and "
                        "their preprocessing and training requirements are kept unless the recipe states others")
    p.add_argument("--teacher", metavar="WEIGHTS",
                   help="distil from these trained weights (zoo name, file or folder; the recipe's distill section "
                        "sets loss, weight and temperature: pixel-wise kl by default)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in OUTPUT (it is removed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segzoo.training.distributed import teardown_distributed
    from segzoo.training.recipe import Recipe
    from segzoo.training.trainer import Trainer

    overrides = list(args.set)
    if args.teacher:
        # an override, not a later edit: the recipe's check sees the teacher, so distill.* settings stated next to
        # --teacher are honoured (JSON-quoted so that a path or name reads back as the same string)
        overrides.append(f"distill.teacher={json.dumps(args.teacher)}")
    recipe = Recipe.load(args.recipe, overrides, init=args.init)
    try:
        trainer = Trainer(recipe, args.output, resume=args.resume, overwrite=args.overwrite)
        summary = trainer.fit()
    finally:
        teardown_distributed()
    if trainer.ctx.is_main:
        print(json.dumps(summary, indent=2))
    interrupted = trainer.interrupted
    return 128 + int(interrupted.signum) if interrupted else 0
