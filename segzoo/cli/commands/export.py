"""``segzoo export``: export to ONNX (.onnx), OpenVINO IR (.xml) or a torch.export program (.pt2), dynamic batch /
height / width, checked against PyTorch; ``--fastest`` keeps the faster runtime's file on this CPU."""

from __future__ import annotations

import argparse
import json

from segzoo.core.io import check_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export to ONNX (.onnx), OpenVINO IR (.xml) or a torch.export program "
                                      "(.pt2), dynamic batch / height / width, checked against PyTorch")
    p.add_argument("source", help="a weights file or folder, model.tag, hf-hub:org/name, or a named model")
    p.add_argument("out", help="the file to write: .onnx, .xml (OpenVINO IR) or .pt2; with --fastest, a name without "
                               "a suffix")
    p.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"), help="example input size")
    p.add_argument("--static", action="store_true", help="fixed input size (--size) instead of dynamic")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--uint8-input", action="store_true",
                   help="the graph takes uint8 NCHW images 0..255 and normalises them itself (mobile / browser "
                        "runtimes); parity is checked on uint8 images")
    p.add_argument("--fastest", action="store_true",
                   help="export to onnxruntime and OpenVINO (if installed), time each and PyTorch's fast path on "
                        "this CPU in its own process, keep the faster file as OUT.onnx or OUT.xml")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segzoo.deploy import export, export_fastest, load_source

    out = check_output(args.out, overwrite=args.overwrite)
    options = {"dynamic": not args.static, "opset": args.opset, "example_size": tuple(args.size),
               "uint8_input": args.uint8_input}
    if args.fastest:
        report = export_fastest(load_source(args.source), out, overwrite=args.overwrite, **options)
    else:
        report = export(load_source(args.source), out, **options)
    print(json.dumps(report, indent=2))
    return 0
