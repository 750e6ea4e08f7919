"""``segzoo predict``: class-id PNGs and coloured overlays for images or folders."""

from __future__ import annotations

import argparse

from segzoo.core.errors import InvalidValueError


def register(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=run)


def _tile(text: str) -> int | str | None:
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tile takes a number of pixels, 'auto' or 'none', got {text!r}") from None


def run(args: argparse.Namespace) -> int:
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
