"""Deployment on CPU: eager, the fast path, ONNX Runtime fp32 and static INT8 of a published zoo weight, with
latency at the dataset's image size (batch 1) and validation mIoU; then whole-image vs tiled vs TTA prediction of
the aerial weights on their full-resolution validation tiles.

Needs ``../shared/data`` (or ``$SEGZOO_DATA``) and the ``export`` extra. Run on an idle machine:

    SEGZOO_DATA=../shared/data python -m benchmarks.deploy
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import segzoo
from benchmarks._report import write_result
from segzoo.core.outputs import class_ids
from segzoo.core.timing import latencies
from segzoo.data.dataset import SegmentationDataset, build_pairs
from segzoo.data.masks import read_image
from segzoo.data.normalize import normalize
from segzoo.deploy import cpu_int8_support, export_onnx, quantize
from segzoo.inference.tiling import predict_probs
from segzoo.training.metrics import ConfusionMatrix
from segzoo.training.recipe import Recipe

Logits = Callable[[torch.Tensor], torch.Tensor]


def _median_ms(fn: Logits, x: torch.Tensor, repeats: int) -> float:
    fn(x)  # warm-up
    return 1000 * float(np.median(latencies(lambda: fn(x), repeats, torch.device("cpu"))))


def _ort(path: Path) -> Logits:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def _val(recipe: Recipe) -> SegmentationDataset:
    data = recipe.data
    return SegmentationDataset(build_pairs(data, "val"), data.decoder(), recipe.augment.eval_transform())


def _miou(predict: Callable[[torch.Tensor], torch.Tensor], dataset: SegmentationDataset, model) -> dict:
    """mIoU and per-class IoU of ``predict`` (normalised image -> class ids) over ``dataset``, one image at a time."""
    cm = ConfusionMatrix(model.num_classes, dataset.decoder.ignore_index)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(len(dataset)):
            image, mask = dataset[i]
            logits = predict(normalize(image.unsqueeze(0), model.meta.preprocessing).float())
            cm.update(logits, mask.unsqueeze(0).long())
    result = cm.compute()
    return {"miou": round(100 * result["miou"], 2), "iou": [round(100 * v, 1) for v in result["iou"]],
            "seconds": round(time.perf_counter() - start, 1)}


def deploy_variants(weights: str, recipe_name: str, repeats: int, n_calibration: int, work: Path) -> dict:
    model = segzoo.from_pretrained(weights).eval()
    recipe = Recipe.load(recipe_name)
    val = _val(recipe)
    image, _ = val[0]
    height, width = image.shape[-2:]
    x = torch.randn(1, model.in_channels, height, width)
    calibration = [read_image(p) for p, _ in build_pairs(recipe.data, "train")[:n_calibration]]  # never val
    onnx_fp32 = work / "fp32.onnx"
    export_onnx(model, onnx_fp32, example_size=(height, width))
    int8 = quantize(model, calibration, example_size=(height, width))
    variants: dict[str, Logits] = {
        "eager fp32": lambda t: model(t),
        "fast fp32 (segzoo.optimize)": segzoo.optimize(model, dtype=None),
        "fast bf16 (segzoo.optimize)": segzoo.optimize(model, dtype=torch.bfloat16),
        "onnxruntime fp32": _ort(onnx_fp32),
        "onnxruntime int8 (QDQ)": int8,
    }
    rows = {}
    with torch.inference_mode():
        for name, fn in variants.items():
            ms = _median_ms(fn, x, repeats)
            rows[name] = {"latency_ms": round(ms, 1), "images_per_s": round(1000 / ms, 2)}
            print(f"{weights} {name:30} {ms:7.1f} ms", flush=True)
    for name in ("eager fp32", "onnxruntime int8 (QDQ)"):
        fn = variants[name]
        rows[name]["val"] = _miou(lambda t, fn=fn: class_ids(fn(t)), val, model)
        print(f"{weights} {name:30} val mIoU {rows[name]['val']['miou']}", flush=True)
    fast = rows["fast fp32 (segzoo.optimize)"]["images_per_s"]
    return {
        "weights": weights, "image_size": [int(height), int(width)], "batch": 1, "variants": rows,
        "int8_speedup_vs_fast_fp32": round(rows["onnxruntime int8 (QDQ)"]["images_per_s"] / fast, 2),
        "int8_miou_drop": round(rows["eager fp32"]["val"]["miou"] - rows["onnxruntime int8 (QDQ)"]["val"]["miou"], 2),
        "int8_report": {k: v for k, v in int8.report.items() if k != "fp32_export_checks"},
    }


def tiling_modes(weights: str, recipe_name: str, tile: int) -> dict:
    """Whole image vs sliding windows vs windows + flips on the full-resolution validation tiles."""
    model = segzoo.from_pretrained(weights).eval()
    val = _val(Recipe.load(recipe_name))
    modes = {
        "whole image": {},
        f"tiles {tile}, overlap 0.25": {"tile": tile, "overlap": 0.25},
        f"tiles {tile}, overlap 0.25, hflip+vflip TTA": {"tile": tile, "overlap": 0.25, "tta": ("hflip", "vflip")},
    }
    rows = {}
    for name, options in modes.items():
        rows[name] = _miou(lambda t, o=options: class_ids(predict_probs(model, t, **o), probabilities=True), val,
                           model)
        print(f"{weights} {name:45} val mIoU {rows[name]['miou']} ({rows[name]['seconds']} s)", flush=True)
    return {"weights": weights, "images": len(val), "modes": rows}


_MEMORY_PROBE = """
import json, sys, time, numpy as np, torch, segzoo
# /proc's VmRSS / VmHWM, not getrusage: ru_maxrss survives execve, so a child of the benchmark (whose own peak
# is larger) read its parent's peak before and after, and reported 0 MiB
def mib(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024
model = segzoo.from_pretrained(sys.argv[1]).eval()
side, tile = int(sys.argv[2]), int(sys.argv[3])
model.predict(np.zeros((tile, tile, 3), np.uint8), tile=tile)  # warm-up: one window's worth of memory
base = mib("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current RSS
image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
start = time.perf_counter()
ids = model.predict(image, tile=tile, overlap=0.25)
seconds = time.perf_counter() - start
peak = mib("VmHWM")
print(json.dumps({"side": side, "tile": tile, "seconds": round(seconds, 1), "shape": list(ids.shape),
                  "peak_rss_above_model_mib": round(peak - base, 1),
                  "image_and_ids_mib": round((image.nbytes + ids.numel() * 8) / 2**20, 1)}))
"""


def large_image_memory(weights: str, side: int, tile: int) -> dict:
    """Peak memory of one ``side`` x ``side`` prediction by ``tile`` windows, above the loaded model (a fresh
    process, so the peak is this prediction's)."""
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, weights, str(side), str(tile)], capture_output=True,
                         text=True, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"{weights} {side}x{side} by {tile} windows: {result}", flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="deeplabv3plus_mnv2.camvid")
    parser.add_argument("--recipe", default="camvid")
    parser.add_argument("--aerial", default="unet_mnv2.aerial", help="weights for the tiling comparison ('' skips)")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--calibration", type=int, default=32, help="training images used to calibrate INT8")
    parser.add_argument("--output", default="benchmarks/results/deploy.json")
    args = parser.parse_args(argv)
    result = {"cpu_int8": cpu_int8_support()["flags"], "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        result["deploy"] = deploy_variants(args.weights, args.recipe, args.repeats, args.calibration, Path(tmp))
    if args.aerial:
        result["tiling"] = tiling_modes(args.aerial, "aerial", args.tile)
        result["large_image"] = large_image_memory(args.aerial, 4000, args.tile)
    return write_result(result, args.output, ["deploy"])


if __name__ == "__main__":
    main()
