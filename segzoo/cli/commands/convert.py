"""``segzoo convert``: import a torchvision / smp / milesial / transformers checkpoint as segzoo weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from segzoo.core.errors import MissingFileError
from segzoo.core.io import check_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="import a torchvision / smp / milesial / transformers checkpoint as segzoo "
                                       "weights")
    p.add_argument("src", help="checkpoint file (.pth read with weights_only=True, or .safetensors), or a "
                               "transformers folder (config.json + weights)")
    p.add_argument("dst", help="a .safetensors file, or a folder for the save_pretrained layout")
    p.add_argument("--from", dest="source", required=True,
                   help="importer: torchvision, smp, milesial, transformers or a plugin's (segzoo.list_converters())")
    p.add_argument("--arch", help="architecture when the weights do not say: torchvision name, or smp config JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

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
