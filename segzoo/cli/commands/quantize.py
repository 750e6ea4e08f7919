"""``segzoo quantize``: static INT8 for CPUs (onnxruntime .onnx or OpenVINO .xml), calibrated on your images."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from segzoo.cli.commands._options import output_and_calibration
from segzoo.core.errors import InvalidValueError


def register(sub: argparse._SubParsersAction) -> None:
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
                        "segzoo.deploy.sensitivity.sensitivity finds the layers worth it)")
    p.add_argument("--crop", type=int, metavar="SIDE",
                   help="onnxruntime calibrates on each image's centre SIDE x SIDE window (percentile and entropy "
                        "need images of one size; default: the published weights' recorded recipe, else whole "
                        "images)")
    p.add_argument("--weight-type", choices=["int8", "uint8"],
                   help="onnxruntime's weight type (default: the published weights' recorded recipe for this CPU, "
                        "else int8, 7-bit on CPUs without VNNI)")
    p.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"),
                   help="example input size of the fp32 export")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def _int8_options(model: Any, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """The quantizer's keyword arguments for ``backend``: the flags, or where none are given, the published weights'
    recorded recipe for this CPU (said on stderr)."""
    onnxruntime = backend == "onnxruntime"
    weights = {"weight_type": args.weight_type} if onnxruntime and args.weight_type else {}
    if args.method is not None or args.keep_float or args.crop is not None:
        return {"keep_float": args.keep_float, **weights,
                **({"method": args.method or "minmax", "calibration_crop": args.crop} if onnxruntime else {})}
    return {**_recorded_recipe(model, backend), **weights}


def _recorded_recipe(model: Any, backend: str) -> dict[str, Any]:
    from segzoo.deploy.quantize import cpu_int8_support
    from segzoo.deploy.recipes import zoo_int8_recipe

    onnxruntime = backend == "onnxruntime"
    recipe = zoo_int8_recipe(model, backend, vnni=cpu_int8_support()["vnni"])
    if recipe is None:
        return {}
    weights = {k: recipe[k] for k in ("weight_type", "reduce_range") if k in recipe}
    crop = f", calibration on centre {recipe['calibration_crop']}-pixel windows" if recipe["calibration_crop"] else ""
    print(f"segzoo quantize: {recipe['weights']}'s {recipe['key']} INT8 recipe from the weights manifest: "
          + (f"method {recipe['method']}{crop}, " if onnxruntime else "")
          + "".join(f"{k} {v}, " for k, v in weights.items())
          + f"kept in float {recipe['keep_float'] or 'nothing but the head'} (pass --method, --keep-float or "
          "--crop to choose yourself)", file=sys.stderr, flush=True)
    return {"keep_float": recipe["keep_float"], **weights,
            **({"method": recipe["method"], "calibration_crop": recipe["calibration_crop"]} if onnxruntime else {})}


def run(args: argparse.Namespace) -> int:
    from segzoo.deploy import load_source, quantize_to_file

    out, images = output_and_calibration(args)
    suffixes = {"onnxruntime": ".onnx", "openvino": ".xml"}
    backend = args.backend or ("openvino" if out.suffix.lower() == ".xml" else "onnxruntime")
    if backend == "auto":
        if out.suffix.lower() in suffixes.values():
            raise InvalidValueError(f"--backend auto names the file by the backend it picks: give OUT without a "
                                    f"suffix, got {str(out)!r}")
    elif out.suffix.lower() != suffixes[backend]:
        raise InvalidValueError(f"--backend {backend} writes a {suffixes[backend]} file, got {str(out)!r}")
    if backend == "openvino" and (args.method is not None or args.crop is not None or args.weight_type):
        raise InvalidValueError("--method, --crop and --weight-type apply to the onnxruntime backend; NNCF chooses "
                                "its own ranges and types")
    model = load_source(args.source)
    size = tuple(args.size)
    if backend == "auto":
        from segzoo.deploy.fastest import quantize_fastest

        options = {b: _int8_options(model, b, args) for b in suffixes}
        report = quantize_fastest(model, images, out, options=options, example_size=size,
                                  overwrite=args.overwrite)
    elif backend == "openvino":
        from segzoo.deploy.openvino import quantize_openvino

        report = quantize_openvino(model, images, out, example_size=size, **_int8_options(model, backend, args))
    else:
        report = quantize_to_file(model, out, images, example_size=size, **_int8_options(model, backend, args))
    print(json.dumps(report, indent=2))
    return 0
