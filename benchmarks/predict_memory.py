"""Peak memory of ``segzoo predict`` per image pixel: the slope of the peak resident size between two image sizes,
each measured in a fresh process (so the fixed cost of Python, torch and the model cancels out).

    python -m benchmarks.predict_memory [--classes 6] [--sides 2048 3072] [--out benchmarks/results/...json]

The README's memory rule for tiled prediction is checked against this figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from benchmarks._report import cpu_description

CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from PIL import Image
    from segzoo.api import eval_transform, load
    from segzoo.inference.predictor import predict_files
    weights, side, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (side, side, 3), np.uint8)).save(out + "/image.png")
    del rng
    model, transform = load(weights), eval_transform(weights)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    predict_files(model, transform, [__import__("pathlib").Path(out + "/image.png")], out + "/pred",
                  progress=False, tile="auto")
    print(before * 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
""")


def documented_bytes_per_pixel(classes: int) -> int:
    """The README's rule for segzoo predict's peak memory: the probability map and its blending weight, the image,
    its normalised copy and the class ids."""
    return 5 * (classes + 3)


def peak_bytes(weights: Path, side: int) -> tuple[int, int]:
    """(peak before predicting, peak after) of one ``predict_files`` call on a ``side`` x ``side`` image."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", CHILD, str(weights), str(side), tmp], capture_output=True,
                             text=True, check=True)
    before, after = out.stdout.split()
    return int(before), int(after)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--sides", type=int, nargs=2, default=(2048, 3072))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    import segzoo

    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "w"
        segzoo.create("unet_r18", num_classes=args.classes, encoder="test_resnet").save_pretrained(weights)
        peaks = {side: peak_bytes(weights, side) for side in args.sides}
    small, large = args.sides
    slope = (peaks[large][1] - peaks[small][1]) / (large * large - small * small)
    result = {"cpu": cpu_description(), "classes": args.classes, "sides": list(args.sides),
              "peak_bytes": {str(s): p[1] for s, p in peaks.items()},
              "bytes_per_pixel": round(slope, 1),
              "documented_bytes_per_pixel": documented_bytes_per_pixel(args.classes)}
    result["within_documented"] = slope <= result["documented_bytes_per_pixel"]
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
