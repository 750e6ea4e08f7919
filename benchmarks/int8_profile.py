"""Where onnxruntime spends an INT8 graph's time, next to its fp32 graph: per operator type and per node, from
onnxruntime's own profiler (kernel times, median over runs), for a zoo weight at its image size, batch 1.

A quantized graph is only as fast as its slowest parts: float layers between quantize / dequantize pairs, and
INT8 kernels that onnxruntime runs no faster than fp32 (e.g. depthwise convolutions). This benchmark finds them,
so that which layers stay in float can be chosen by speed as well as by accuracy (``benchmarks.int8_recipe``).
Needs ``../shared/data`` (or ``$SEGZOO_DATA``) for the calibration images and the ``export`` extra. Run on an
idle machine:

    SEGZOO_DATA=../shared/data python -m benchmarks.int8_profile --weights unet_mnv2.aerial \\
        --keep "" encoder.model.blocks.0
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

import segzoo
from benchmarks._report import cpu_description, write_result
from benchmarks.deploy import manifest_rows
from benchmarks.int8_recipe import random_crop
from segzoo.data.dataset import build_pairs
from segzoo.data.masks import read_image
from segzoo.deploy.onnx import export_onnx
from segzoo.deploy.quantize import quantize
from segzoo.training.recipe import Recipe


def profile_graph(onnx: bytes | str, x: np.ndarray, runs: int, work: Path) -> dict[str, Any]:
    """Median kernel microseconds of each node over ``runs`` profiled runs (after two unprofiled ones), summed per
    operator type; the total is the sum of the nodes' medians, the wall time the median of whole runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(work / "profile")
    session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(2):
        session.run(None, {name: x})
    for _ in range(runs):
        session.run(None, {name: x})
    events = json.loads(Path(session.end_profiling()).read_text())
    nodes: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    whole: list[float] = []
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            node = event["name"].removesuffix("_kernel_time")
            nodes[node].append(event["dur"])
            op_of[node] = event["args"]["op_name"]
        elif event.get("cat") == "Session" and event["name"] == "model_run":
            whole.append(event["dur"])
    # the first two (warm-up) runs are profiled too: keep each node's last ``runs`` occurrences
    median = {node: float(np.median(durations[-runs:])) for node, durations in nodes.items()}
    by_op: dict[str, float] = defaultdict(float)
    for node, us in median.items():
        by_op[op_of[node]] += us
    return {"wall_ms": round(float(np.median(whole[-runs:])) / 1000, 2),
            "kernel_ms": round(sum(median.values()) / 1000, 2),
            "by_op_ms": {op: round(us / 1000, 2) for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])},
            "nodes": [{"node": node, "op": op_of[node], "ms": round(us / 1000, 3)}
                      for node, us in sorted(median.items(), key=lambda kv: -kv[1])]}


def profile_model(model: Any, recipe: Recipe, name: str, size: tuple[int, int], keeps: list[list[str]], *,
                  runs: int = 10, n_calibration: int = 32, crop: int = 0, seed: int = 0, top: int = 15
                  ) -> dict[str, Any]:
    """The fp32 graph's profile and the INT8 graph's for each set of float-kept modules, calibrated (minmax) on
    ``n_calibration`` random training images of ``recipe`` (one ``crop``-pixel window each when ``crop`` > 0)."""
    model = model.float().eval()
    train = build_pairs(recipe.data, "train")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    window = (lambda image: random_crop(image, crop, rng)) if crop > 0 else (lambda image: image)
    calibration = [window(read_image(train[i][0])) for i in order[:n_calibration]]
    x = rng.standard_normal((1, model.in_channels, *size)).astype(np.float32)  # as benchmarks.deploy times
    graphs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="segzoo-int8-profile-") as tmp:
        work = Path(tmp)
        export_onnx(model, work / "fp32.onnx", dynamic=True, example_size=size)
        graphs["fp32"] = profile_graph(str(work / "fp32.onnx"), x, runs, work)
        for keep in keeps:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                q = quantize(model, calibration, method="minmax", example_size=size, keep_float=keep)
            graphs[f"int8 keep {keep}"] = profile_graph(q.onnx_bytes, x, runs, work)
    for label, graph in graphs.items():
        print(f"{name} {label}: {graph['wall_ms']} ms per run ({graph['kernel_ms']} ms in kernels)")
        for op, ms in list(graph["by_op_ms"].items())[:8]:
            print(f"    {op:28} {ms:8.2f} ms")
        for node in graph["nodes"][:top]:
            print(f"      {node['ms']:8.2f} ms  {node['op']:22} {node['node']}")
        graph["nodes"] = graph["nodes"][:top]
    return {"weights": name, "image_size": list(size), "runs": runs, "calibration_images": n_calibration,
            "calibration_crop": crop or None, "graphs": graphs}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="*", help="zoo names model.tag (default: every manifest row)")
    parser.add_argument("--keep", nargs="+", default=[""], help="INT8 graphs to profile, one per argument: "
                        "comma-separated module names kept in float ('' keeps only the head)")
    parser.add_argument("--runs", type=int, default=10, help="profiled runs per graph")
    parser.add_argument("--calibration", type=int, default=32, help="training images calibrated on")
    parser.add_argument("--crop", type=int, default=512, help="calibrate on one random window of this side per "
                        "image (0: whole images)")
    parser.add_argument("--top", type=int, default=15, help="slowest nodes printed and kept per graph")
    parser.add_argument("--output", default="benchmarks/results/int8_profile.json")
    args = parser.parse_args(argv)
    try:
        rows = manifest_rows(args.weights)
    except ValueError as exc:
        parser.error(str(exc))
    keeps = [[m for m in keep.split(",") if m] for keep in args.keep]
    entries = [profile_model(segzoo.from_pretrained(name), Recipe.load(row["recipe"]), name,
                             tuple(row["image_size"]), keeps, runs=args.runs, n_calibration=args.calibration,
                             crop=args.crop, top=args.top) for name, row in rows.items()]
    return write_result({"cpu": cpu_description(), "weights": entries},
                        args.output, [])


if __name__ == "__main__":
    main()
