"""``segzoo eval``: score weights on a recipe's split or on a folder of images and masks (mIoU, Dice, accuracies, per
class)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from segzoo.core.config import label_count
from segzoo.core.errors import InvalidValueError
from segzoo.core.io import check_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score weights on a recipe's split or on a folder of images and masks "
                                    "(mIoU, Dice, accuracies, per class)")
    p.add_argument("recipe", nargs="?", help="a recipe file or bundled name: its --split is scored")
    p.add_argument("--weights", "-w", required=True,
                   help="weights (file, folder, model.tag, hf-hub:org/name), a segzoo .onnx (fp32 or INT8) or .pt2")
    p.add_argument("--images", help="a folder of images: with --masks, every pair (matched by file stem) is scored")
    p.add_argument("--masks", help="the folder of masks for --images")
    p.add_argument("--mask-values", help="with --images: JSON map of raw mask values to class ids, e.g. "
                                         + EVAL_JSON_EXAMPLES["--mask-values"])
    p.add_argument("--colours", help="with --images: JSON map of class names to RGB (colour-coded masks); default: "
                                     "the weights' class colours when the masks are RGB")
    p.add_argument("--ignore-colour", type=_rgb, action="append", default=[], metavar="R,G,B",
                   help="with --images and colour masks: a colour to ignore (repeatable)")
    p.add_argument("--ignore-index", type=int, default=None,
                   help="with --images: the mask value that is ignored (default 255; CamVid's void is 11)")
    p.add_argument("--split", default=None, choices=["train", "val"], help="the recipe's split (default val)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: the recipe's, else the best one)")
    p.add_argument("--output", "-o", help="write the metrics as JSON here too")
    p.add_argument("--plots", metavar="DIR", help="write confusion.png (row-normalised confusion matrix) here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.set_defaults(func=run)


EVAL_JSON_EXAMPLES = {"--mask-values": '\'{"0": 0, "255": 1}\'', "--colours": '\'{"road": [128, 64, 128], ...}\''}

def _json_option(text: str | None, flag: str):
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidValueError(f"{flag} takes JSON, e.g. {EVAL_JSON_EXAMPLES[flag]}; got {text!r}: {exc}") from None

def _rgb(text: str) -> list[int]:
    try:
        rgb = [int(v) for v in text.split(",")]
    except ValueError:
        rgb = []
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise argparse.ArgumentTypeError(f"--ignore-colour takes R,G,B in 0..255, e.g. 0,0,0; got {text!r}")
    return rgb

def _folder_eval_data(args: argparse.Namespace, model):
    """Pairs, mask decoder, classes, ignore index and a description for ``segzoo eval --images --masks``: the
    masks' encoding from the flags, else from the weights' classes and colours and the masks' own mode."""
    from segzoo.data.masks import MaskDecoder, mask_kind
    from segzoo.data.pairs import direct_pairs

    pairs = direct_pairs(args.images, args.masks)
    classes = list(model.meta.class_names or [f"class_{i}" for i in range(label_count(model.num_classes))])
    values = _json_option(args.mask_values, "--mask-values")
    colours = _json_option(args.colours, "--colours")
    if values is not None and colours is not None:
        raise InvalidValueError("--mask-values and --colours exclude each other: masks hold class ids or colours")
    ignore_colours = [tuple(c) for c in args.ignore_colour]
    if colours is None and values is None:
        known = (model.meta.class_colours or []) + [list(c) for c in ignore_colours]
        if mask_kind(pairs[0][1], known if model.meta.class_colours else None) == "colours":
            if not model.meta.class_colours:
                raise InvalidValueError(f"mask {str(pairs[0][1])!r} is colour-coded, but the weights carry no class "
                                        "colours: give the table with --colours")
            colours = dict(zip(classes, model.meta.class_colours))
    if isinstance(colours, dict):
        unknown = sorted(set(colours) - set(classes))
        if unknown:
            raise InvalidValueError(f"--colours names {unknown}, which are not the model's classes {classes}")
        table = {tuple(rgb): classes.index(name) for name, rgb in colours.items()}
    elif colours is not None:
        if not isinstance(colours, list) or len(colours) != len(classes):
            raise InvalidValueError(f"--colours takes a mapping of class names to RGB, or a list of {len(classes)} "
                                    f"RGB triples (one per class {classes}); got {args.colours!r}")
        table = {tuple(rgb): i for i, rgb in enumerate(colours)}
    else:
        table = None
    if table is not None:
        table.update(dict.fromkeys(ignore_colours, args.ignore_index))
    try:
        values = None if values is None else {int(k): int(v) for k, v in values.items()}
    except (AttributeError, TypeError, ValueError):
        raise InvalidValueError(f"--mask-values takes a mapping of raw mask values to class ids, e.g. "
                                f"{EVAL_JSON_EXAMPLES['--mask-values']}; got {args.mask_values!r}") from None
    decoder = MaskDecoder(len(classes), args.ignore_index, colours=table, values=values)
    encoding = "colours" if table is not None else ("mapped values" if values else "class ids")
    source = (f"every pair of {str(args.images)!r} + {str(args.masks)!r} (masks read as {encoding}, "
              f"ignore index {args.ignore_index})")
    return pairs, len(pairs), decoder, classes, args.ignore_index, source

def _recipe_eval_data(args: argparse.Namespace):
    """Pairs, mask decoder, classes, ignore index and a description for ``segzoo eval RECIPE``: the recipe's
    split, said with how many of the dataset's pairs it holds."""
    from segzoo.data.dataset import build_pairs, resolve_data_root
    from segzoo.training.recipe import Recipe

    recipe = Recipe.load(args.recipe, args.set)
    data = recipe.data
    pairs = build_pairs(data, args.split)
    root = resolve_data_root(data.root)
    if data.layout == "folder":
        found = len(build_pairs(data, "train")) + len(build_pairs(data, "val"))
        source = (f"the {args.split} split of {str(root)!r} (val_fraction {data.val_fraction}; "
                  "--images/--masks scores every pair of a folder)")
    else:
        found = len(pairs)
        source = f"the pairs listed in {getattr(data, f'{args.split}_list')!r} under {str(root)!r}"
    if data.limit:
        source += f", limited to the first {data.limit} (data.limit)"
    return recipe, pairs, found, data.decoder(), list(data.classes), data.ignore_index, source


def run(args: argparse.Namespace) -> int:
    import torch

    from segzoo.api import eval_transform, load
    from segzoo.core.config import check_classes
    from segzoo.core.device import pick_device
    from segzoo.data.dataset import SegmentationDataset, make_loader
    from segzoo.inference.predictor import place
    from segzoo.training.distributed import setup_distributed, shard, teardown_distributed
    from segzoo.training.evaluate import evaluate
    from segzoo.training.metrics import ConfusionMatrix

    folder = args.images is not None or args.masks is not None
    if folder and (args.images is None or args.masks is None):
        raise InvalidValueError("--images and --masks go together: the folder of images and the folder of masks")
    if folder == (args.recipe is not None):
        raise InvalidValueError("give a recipe (its validation split is scored) or --images DIR --masks DIR "
                                "(every pair is scored), not " + ("both" if folder else "neither"))
    if not folder and (args.mask_values or args.colours or args.ignore_colour or args.ignore_index is not None):
        raise InvalidValueError("--mask-values, --colours, --ignore-colour and --ignore-index apply to "
                                "--images/--masks; a recipe states its masks' encoding in its data section")
    if folder and (args.split is not None or args.set):
        raise InvalidValueError("--split and --set apply to a recipe; --images/--masks score every pair given")
    args.split = args.split or "val"
    args.ignore_index = 255 if args.ignore_index is None else args.ignore_index
    if args.output:
        check_output(args.output, "--output", overwrite=args.overwrite)
    if args.plots:
        check_output(args.plots, "--plots", folder=True)
    model, transform = load(args.weights), eval_transform(args.weights)
    if folder:
        pairs, found, decoder, classes, ignore_index, source = _folder_eval_data(args, model)
        batch_size, workers, device = 1, 0, pick_device(args.device)
    else:
        recipe, pairs, found, decoder, classes, ignore_index, source = _recipe_eval_data(args)
        check_classes(model, classes, f"weights {args.weights!r}", f"recipe {args.recipe!r}")
        batch_size, workers = recipe.train.val_batch_size, recipe.train.num_workers
        device = pick_device(args.device if args.device != "auto" else recipe.train.device)
    if not isinstance(model, torch.nn.Module) and args.device == "auto":
        device = torch.device("cpu")  # onnxruntime's CPU session
    model = place(model, device)
    ctx = setup_distributed(device)
    dataset = SegmentationDataset(pairs, decoder, transform)
    loader = make_loader(dataset, batch_size, shard(list(range(len(dataset))), ctx, pad=False), workers,
                         ignore_index=ignore_index)
    if ctx.is_main:
        print(f"segzoo eval: scoring {len(pairs)} of {found} pairs: {source}", file=sys.stderr, flush=True)
    confusion = ConfusionMatrix(len(classes), ignore_index, device=device)
    try:
        metrics = evaluate(model, loader, len(classes), ignore_index, device, model.meta.preprocessing,
                           confusion=confusion, progress=ctx.is_main and not args.quiet)
    finally:
        teardown_distributed()
    result = {
        "weights": str(args.weights),
        "pairs": {"scored": len(pairs), "found": found, "source": source},
        **{k: metrics[k] for k in ("miou", "mdice", "pixel_acc", "mean_acc")},
        "per_class": confusion.per_class(classes),
    }
    if ctx.is_main:
        print(json.dumps(result, indent=2))
        if args.output:
            from segzoo.core.io import atomic_path

            with atomic_path(args.output) as tmp:
                tmp.write_text(json.dumps(result, indent=2) + "\n")
        if args.plots:
            from segzoo.training.plots import plot_confusion

            Path(args.plots).mkdir(parents=True, exist_ok=True)
            path = plot_confusion(confusion.matrix, classes, Path(args.plots) / "confusion.png")
            print(f"segzoo eval: wrote {path}", file=sys.stderr)
    return 0
