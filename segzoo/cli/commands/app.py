"""``segzoo app``: a local web app: predict with any weights in the browser, compare two (the app extra, Gradio)."""

from __future__ import annotations

import argparse

from segzoo.core.errors import InvalidValueError
from segzoo.core.extras import install_hint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="a local web app: predict with any weights in the browser, compare two (the app "
                                   "extra, Gradio)")
    p.add_argument("--weights", nargs="*", default=[], help="weights to load at start and offer first (anything "
                                                            "predict takes)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (ONNX and OpenVINO files run on the CPU)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import importlib.util

    from segzoo.core.device import pick_device

    if importlib.util.find_spec("gradio") is None:  # not imported here: the app sets Gradio's folder first
        raise InvalidValueError(f"segzoo app needs Gradio: {install_hint('app')}")
    from segzoo.cli.app import launch

    if args.port is not None and not 0 < args.port < 65536:
        raise InvalidValueError(f"--port must be in 1..65535, got {args.port}")
    launch(args.weights, host=args.host, port=args.port, share=args.share, device=str(pick_device(args.device)))
    return 0
