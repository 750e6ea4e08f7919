"""What several commands check the same way: their output and calibration images."""

from __future__ import annotations

import argparse
from pathlib import Path

from segzoo.core.errors import InvalidValueError, OutputExistsError
from segzoo.core.io import check_output


def output_and_calibration(args: argparse.Namespace, folder: bool = False) -> tuple[Path, list]:
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
