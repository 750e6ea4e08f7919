"""The ``segzoo`` command line: list, info, convert, train, eval, predict, export, quantize, prune, publish, demo."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segzoo.core.config import label_count
from segzoo.core.errors import InvalidValueError, MissingFileError, OutputExistsError
from segzoo.core.extras import install_hint
from segzoo.core.io import check_output

__all__ = ["main", "count_flops"]


def count_flops(model, height: int = 512, width: int = 512) -> int:
    """FLOPs of one forward pass of a segzoo model on a 1 x C x height x width input."""
    import torch

    from segzoo.core.timing import count_flops as flops_on

    return flops_on(model, torch.randn(1, model.in_channels, height, width))


DECLARED_HEADING = ("Published elsewhere (downloaded once on first use, checked, converted, cached; each under its "
                    "own licence):")


def _cmd_list(args: argparse.Namespace) -> int:
    # the registry alone: listing named models imports neither torch nor timm
    from segzoo.core.registry import DECODERS, ENCODERS, MODELS, plugin_status

    if args.plugins:
        rows = plugin_status(probe=True)
        if not rows:
            print("no plugins installed (entry-point groups segzoo.encoders, segzoo.decoders, segzoo.models)")
        for r in rows:
            line = f"{r.kind:8} {r.name:24} {r.distribution:28} {r.state}"
            print(line + (f"  -- {r.error}" if r.error else ""))
        return 1 if any(r.state in ("failed", "conflict", "malformed") for r in rows) else 0
    if args.weights:
        from segzoo.storage.manifest import read_manifest, zoo_table
        from segzoo.storage.specs import declared_table

        rows = [e for e in read_manifest() if fnmatch.fnmatch(f"{e['model']}.{e['tag']}", args.pattern)]
        print(zoo_table(rows))
        print(f"\n{DECLARED_HEADING}\n\n{declared_table(args.pattern)}")
        return 0
    registry = ENCODERS if args.encoders else DECODERS if args.decoders else MODELS
    names = registry.names(args.pattern)
    print("\n".join(names))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import segzoo

    if args.size < 16:
        raise InvalidValueError(f"--size must be at least 16 pixels, got {args.size}")
    info = segzoo.model_info(args.name)
    model = segzoo.create(args.name)
    info["parameters"] = sum(p.numel() for p in model.parameters())
    info[f"gflops_{args.size}x{args.size}"] = round(count_flops(model, args.size, args.size) / 1e9, 2)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    config = info.pop("config")
    for key, value in info.items():
        print(f"{key:20} {value}")
    print("config:")
    print(json.dumps(config, indent=2))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from segzoo.core.registry import CONVERTERS
    from segzoo.storage.format import WEIGHTS_NAME, write_weights

    kwargs = {}
    if args.arch:
        kwargs["arch"] = json.loads(args.arch) if args.arch.lstrip().startswith("{") else args.arch
    if not Path(args.src).exists():
        raise MissingFileError(f"checkpoint {args.src!r} does not exist (a file, or a folder for --from "
                               "transformers)")
    dst = Path(args.dst)
    if dst.suffix == ".safetensors":
        check_output(dst, overwrite=args.overwrite)
    else:
        check_output(dst, "output folder", folder=True)
        check_output(dst / WEIGHTS_NAME, overwrite=args.overwrite)
    model = CONVERTERS.get(args.source)(args.src, **kwargs)
    if dst.suffix == ".safetensors":
        write_weights(model, dst)
    else:
        model.save_pretrained(str(dst))
    print(f"wrote {dst} ({model.config.decoder} / {model.config.encoder.name}, {model.num_classes} classes)")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
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


def _json_option(text: str | None, flag: str):
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidValueError(f"{flag} takes JSON, e.g. {EVAL_JSON_EXAMPLES[flag]}; got {text!r}: {exc}") from None


EVAL_JSON_EXAMPLES = {"--mask-values": '\'{"0": 0, "255": 1}\'', "--colours": '\'{"road": [128, 64, 128], ...}\''}


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


def _cmd_eval(args: argparse.Namespace) -> int:
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


def _tile(text: str) -> int | str | None:
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tile takes a number of pixels, 'auto' or 'none', got {text!r}") from None


def _cmd_predict(args: argparse.Namespace) -> int:
    from segzoo.api import eval_transform, load
    from segzoo.core.device import pick_device
    from segzoo.inference.predictor import expand_inputs, predict_files

    if args.tile is None and (args.overlap is not None or args.batch is not None):
        raise InvalidValueError("--overlap and --batch apply to windows; --tile none predicts whole images")
    if args.overlay_min_side < 0:
        raise InvalidValueError(f"--overlay-min-side must be >= 0 (0: never enlarge), got {args.overlay_min_side}")
    args.overlap = 0.25 if args.overlap is None else args.overlap
    args.batch = 4 if args.batch is None else args.batch
    device = pick_device(args.device)
    files = expand_inputs(args.inputs)
    model, transform = load(args.weights), eval_transform(args.weights)
    written = predict_files(model, transform, files, args.output, device=device, overwrite=args.overwrite,
                            progress=not args.quiet, legend=not args.no_legend, tile=args.tile, overlap=args.overlap,
                            tta=tuple(args.tta), scales=tuple(args.scales), batch=args.batch,
                            overlay_min_side=args.overlay_min_side)
    print(f"wrote {len(written)} class-id PNGs and overlays to {args.output}")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
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


def _cmd_export(args: argparse.Namespace) -> int:
    from segzoo.deploy import export, load_source

    out = check_output(args.out, overwrite=args.overwrite)
    report = export(load_source(args.source), out, dynamic=not args.static, opset=args.opset,
                    example_size=tuple(args.size), uint8_input=args.uint8_input)
    print(json.dumps(report, indent=2))
    return 0


def _output_and_calibration(args: argparse.Namespace, folder: bool = False) -> tuple[Path, list]:
    """What quantize and prune check first: the output (an existing one needs --overwrite), the calibration count,
    and the first --count calibration images (uint8 arrays), read before the model is."""
    from segzoo.data.masks import read_image
    from segzoo.inference.predictor import expand_inputs

    out = check_output(args.out, "output folder" if folder else "output", folder=folder, overwrite=args.overwrite)
    if folder and out.exists() and not args.overwrite:
        raise OutputExistsError(f"output folder {str(out)!r} already exists; pass --overwrite to replace it")
    if args.count < 1:
        raise InvalidValueError(f"--count must be at least 1, got {args.count}")
    files = expand_inputs(args.calibration)[: args.count] if args.calibration else []
    return out, [read_image(f) for f in files]


def _int8_options(model: Any, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """The quantizer's keyword arguments for ``backend``: the flags, or where none are given, the published weights'
    recorded recipe (said on stderr)."""
    from segzoo.deploy.recipes import zoo_int8_recipe

    onnxruntime = backend == "onnxruntime"
    if args.method is not None or args.keep_float or args.crop is not None:
        return {"keep_float": args.keep_float,
                **({"method": args.method or "minmax", "calibration_crop": args.crop} if onnxruntime else {})}
    recipe = zoo_int8_recipe(model, backend)
    if recipe is None:
        return {}
    crop = f", calibration on centre {recipe['calibration_crop']}-pixel windows" if recipe["calibration_crop"] else ""
    print(f"segzoo quantize: {recipe['weights']}'s {backend} INT8 recipe from the weights manifest: "
          + (f"method {recipe['method']}{crop}, " if onnxruntime else "")
          + f"kept in float {recipe['keep_float'] or 'nothing but the head'} (pass --method, --keep-float or "
          "--crop to choose yourself)", file=sys.stderr, flush=True)
    return {"keep_float": recipe["keep_float"],
            **({"method": recipe["method"], "calibration_crop": recipe["calibration_crop"]} if onnxruntime else {})}


def _cmd_quantize(args: argparse.Namespace) -> int:
    from segzoo.deploy import load_source, quantize_to_file

    out, images = _output_and_calibration(args)
    suffixes = {"onnxruntime": ".onnx", "openvino": ".xml"}
    backend = args.backend or ("openvino" if out.suffix.lower() == ".xml" else "onnxruntime")
    if backend == "auto":
        if out.suffix.lower() in suffixes.values():
            raise InvalidValueError(f"--backend auto names the file by the backend it picks: give OUT without a "
                                    f"suffix, got {str(out)!r}")
    elif out.suffix.lower() != suffixes[backend]:
        raise InvalidValueError(f"--backend {backend} writes a {suffixes[backend]} file, got {str(out)!r}")
    if backend == "openvino" and (args.method is not None or args.crop is not None):
        raise InvalidValueError("--method and --crop apply to the onnxruntime backend; NNCF chooses its own ranges")
    model = load_source(args.source)
    size = tuple(args.size)
    if backend == "auto":
        from segzoo.deploy.fastest import quantize_fastest

        options = {b: _int8_options(model, b, args) for b in suffixes}
        report = quantize_fastest(model, images, out, options=options, example_size=size)
    elif backend == "openvino":
        from segzoo.deploy.openvino import quantize_openvino

        report = quantize_openvino(model, images, out, example_size=size, **_int8_options(model, backend, args))
    else:
        report = quantize_to_file(model, out, images, example_size=size, **_int8_options(model, backend, args))
    print(json.dumps(report, indent=2))
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from segzoo.deploy import load_source, prune

    out, images = _output_and_calibration(args, folder=True)
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from segzoo.cli.demo import run_demo

    run_demo(args.output, seconds=args.seconds, n_images=args.images)
    return 0


def _cmd_app(args: argparse.Namespace) -> int:
    import importlib.util

    from segzoo.core.device import pick_device

    if importlib.util.find_spec("gradio") is None:  # not imported here: the app sets Gradio's folder first
        raise InvalidValueError(f"segzoo app needs Gradio: {install_hint('app')}")
    from segzoo.cli.app import launch

    if args.port is not None and not 0 < args.port < 65536:
        raise InvalidValueError(f"--port must be in 1..65535, got {args.port}")
    launch(args.weights, host=args.host, port=args.port, share=args.share, device=str(pick_device(args.device)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segzoo", description="Semantic-segmentation model zoo for PyTorch.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("list", help="list named models (or encoders, decoders, plugins)")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'unet_*'")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--encoders", action="store_true", help="list encoders (segzoo's and every timm model)")
    group.add_argument("--decoders", action="store_true", help="list decoders")
    group.add_argument("--plugins", action="store_true", help="show installed plugins and whether they load")
    group.add_argument("--weights", action="store_true",
                       help="the model zoo: published weights with their metrics (the README's table)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="parameters, FLOPs, config and source of a named model")
    p.add_argument("name")
    p.add_argument("--size", type=int, default=512, help="square input size for the FLOP count (default 512)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="import a torchvision / smp / milesial / transformers checkpoint as segzoo "
                                       "weights")
    p.add_argument("src", help="checkpoint file (.pth read with weights_only=True, or .safetensors), or a "
                               "transformers folder (config.json + weights)")
    p.add_argument("dst", help="a .safetensors file, or a folder for the save_pretrained layout")
    p.add_argument("--from", dest="source", required=True,
                   help="importer: torchvision, smp, milesial, transformers or a plugin's (segzoo.list_converters())")
    p.add_argument("--arch", help="architecture when the weights do not say: torchvision name, or smp config JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_convert)

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
    p.set_defaults(func=_cmd_train)

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
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("predict", help="class-id PNGs and coloured overlays for images or folders")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--weights", "-w", required=True,
                   help="weights (file, folder, model.tag, hf-hub:org/name), a segzoo .onnx (fp32 or INT8) or .pt2")
    p.add_argument("--output", "-o", default="predictions")
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--tile", type=_tile, default="auto",
                   help="blended windows of this many pixels; 'auto' (default): 512-pixel windows for images over "
                        "one megapixel, whole images below; 'none': always whole")
    p.add_argument("--overlap", type=float, default=None, help="overlap of neighbouring windows (default 0.25)")
    p.add_argument("--tta", nargs="*", default=[], choices=["hflip", "vflip"], help="test-time flips to average")
    p.add_argument("--scales", nargs="*", type=float, default=[1.0], help="test-time scales to average")
    p.add_argument("--batch", type=int, default=None, help="windows per forward pass (default 4)")
    p.add_argument("--no-legend", action="store_true", help="overlays without the class legend")
    p.add_argument("--overlay-min-side", type=int, default=384,
                   help="overlays of images with a shorter side below this are enlarged to it (nearest neighbour), so "
                        "that the legend leaves the prediction visible; the class-id PNG keeps the image's size; 0: "
                        "never enlarge (default 384)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_predict)

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
    p.set_defaults(func=_cmd_publish)

    p = sub.add_parser("export", help="export to ONNX (.onnx) or a torch.export program (.pt2), dynamic batch / "
                                      "height / width, checked against PyTorch")
    p.add_argument("source", help="a weights file or folder, model.tag, hf-hub:org/name, or a named model")
    p.add_argument("out", help="the file to write: .onnx or .pt2")
    p.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"), help="example input size")
    p.add_argument("--static", action="store_true", help="fixed input size (--size) instead of dynamic")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--uint8-input", action="store_true",
                   help="the graph takes uint8 NCHW images 0..255 and normalises them itself (mobile / browser "
                        "runtimes); parity is checked on uint8 images")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("quantize", help="static INT8 for CPUs (onnxruntime .onnx or OpenVINO .xml), calibrated on "
                                        "your images")
    p.add_argument("source", help="a weights file or folder, model.tag, hf-hub:org/name, or a named model")
    p.add_argument("out", help="the file to write: NAME.onnx (onnxruntime), NAME.xml (OpenVINO), or NAME with "
                   "--backend auto")
    p.add_argument("--calibration", nargs="+", required=True,
                   help="calibration images (files or folders) like the deployment data, not the evaluation data")
    p.add_argument("--count", type=int, default=32, help="calibration images used (default 32)")
    p.add_argument("--backend", choices=["onnxruntime", "openvino", "auto"],
                   help="onnxruntime (a QDQ .onnx), openvino (an NNCF INT8 IR, .xml + .bin), or auto: both, timed "
                        "on this CPU at --size, the faster kept as OUT.onnx or OUT.xml; default: by the output's "
                        "suffix")
    p.add_argument("--method", choices=["minmax", "percentile", "entropy"],
                   help="how onnxruntime sets activation ranges (default: the published weights' recorded recipe, "
                        "else minmax)")
    p.add_argument("--keep-float", action="append", default=[], metavar="MODULE",
                   help="a module name (e.g. encoder.model.conv_stem) whose layers stay in float, besides the head "
                        "(repeatable; default: the published weights' recorded recipe; "
                        "segzoo.deploy.quantize.sensitivity finds the layers worth it)")
    p.add_argument("--crop", type=int, metavar="SIDE",
                   help="onnxruntime calibrates on each image's centre SIDE x SIDE window (percentile and entropy "
                        "need images of one size; default: the published weights' recorded recipe, else whole "
                        "images)")
    p.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"),
                   help="example input size of the fp32 export")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_cmd_quantize)

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
    p.set_defaults(func=_cmd_prune)

    p = sub.add_parser("demo", help="synthetic data, about a minute of training, evaluation, predictions, plots")
    p.add_argument("--output", "-o", help="folder for everything (default: a new temporary folder)")
    p.add_argument("--seconds", type=float, default=60.0, help="training time budget")
    p.add_argument("--images", type=int, default=240, help="synthetic images to generate")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("app", help="a local web app: predict with any weights in the browser, compare two (the app "
                                   "extra, Gradio)")
    p.add_argument("--weights", nargs="*", default=[], help="weights to load at start and offer first (anything "
                                                            "predict takes)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (ONNX and OpenVINO files run on the CPU)")
    p.set_defaults(func=_cmd_app)

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
