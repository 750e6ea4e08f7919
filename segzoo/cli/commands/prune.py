"""``segzoo prune``: structured channel pruning to a share of the FLOPs (Torch-Pruning; the compress extra); fine-tune
the result with segzoo train --init."""

from __future__ import annotations

import argparse
import json

from segzoo.cli.commands._options import output_and_calibration


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="structured channel pruning to a share of the FLOPs (Torch-Pruning; the "
                                     "compress extra); fine-tune the result with segzoo train --init")
    p.add_argument("source", help="a weights file or folder, model.tag, hf-hub:org/name")
    p.add_argument("--flops", type=float, required=True, help="share of the FLOPs to keep, e.g. 0.6")
    p.add_argument("--output", "-o", dest="out", required=True, help="the save_pretrained folder to write")
    p.add_argument("--criterion", default="magnitude", choices=["magnitude", "taylor"],
                   help="channel ranking: L2 magnitude (no data) or first-order Taylor on --calibration images")
    p.add_argument("--calibration", nargs="+", help="images (files or folders) for the taylor criterion")
    p.add_argument("--count", type=int, default=8, help="calibration images used (default 8)")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"),
                   help="input size the FLOPs are counted at (default 256 256)")
    p.add_argument("--scope", default="model", choices=["model", "decoder"],
                   help="prune every layer (model) or only the decoder, leaving the pretrained encoder whole")
    p.add_argument("--round-to", type=int, default=8,
                   help="channel counts stay multiples of this (default 8; 1 for tiny models)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segzoo.deploy import load_source, prune

    out, images = output_and_calibration(args, folder=True)
    model = load_source(args.source)
    pruned = prune(model, args.flops, criterion=args.criterion, calibration=images, example_size=tuple(args.size),
                   scope=args.scope, round_to=args.round_to)
    pruned.save_pretrained(str(out), description=f"{args.source} pruned to {pruned.meta.pruning['kept_flops']:.0%} "
                                                 "of its FLOPs; fine-tune it with segzoo train RECIPE --init "
                                                 f"{out}")
    params = (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in pruned.parameters()))
    print(json.dumps({"output": str(out), **pruned.meta.pruning, "parameters": {"before": params[0],
                                                                                "after": params[1]}}, indent=2))
    return 0
