"""Choosing the INT8 recipe of a zoo weight by measure, for onnxruntime (static QDQ) or OpenVINO (NNCF): every
calibration method calibrated on training images (never val), judged on other training images; where that misses
the target, a per-layer sensitivity sweep, then the chosen method with the most sensitive layers kept in float, one
at a time, until the drop on held-out training images is within the target. Val is scored for every candidate but
chooses nothing, so it stays an honest check.

Needs ``../shared/data`` (or ``$SEGZOO_DATA``) and the ``export`` extra (``openvino`` for that backend). Run on an
idle machine:

    SEGZOO_DATA=../shared/data python -m benchmarks.int8_recipe --weights unet_mnv2.aerial --crop 512
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import segzoo
from benchmarks._report import cpu_description, write_result
from benchmarks.deploy import _dataset, _median_ms, headline_metric, manifest_rows, score
from segzoo.core.outputs import class_ids
from segzoo.data.dataset import build_pairs
from segzoo.data.masks import read_image
from segzoo.deploy.calibration import CALIBRATION_METHODS
from segzoo.deploy.quantize import quantize
from segzoo.deploy.sensitivity import sensitivity
from segzoo.storage.manifest import NO_VNNI
from segzoo.training.recipe import Recipe


def _candidate(model: Any, q: Any, keep: Sequence[str], val: Any, holdout: Any, metric: str, size: tuple[int, int],
               repeats: int) -> dict[str, Any]:
    ids = lambda t: class_ids(q(t).float())  # noqa: E731
    return {"val": score(ids, val, model, metric)["metric"], "train_holdout": score(ids, holdout, model, metric)[
        "metric"], "latency_ms": round(_median_ms(q, torch.randn(1, model.in_channels, *size), repeats), 1),
        "kept_float_modules": list(keep)}


def int8_builder(backend: str, model: Any, calibration: Sequence[np.ndarray], size: tuple[int, int],
                 work: Path, reduce_range: bool = False) -> Callable[[str, Sequence[str]], Any]:
    """``build(method, keep_float)``: an INT8 model of ``backend`` (a callable of normalised batches). OpenVINO has
    one method, NNCF's (``"nncf"``). ``reduce_range``: onnxruntime's 7-bit weights (CPUs without VNNI)."""
    def onnxruntime(method: str, keep: Sequence[str]) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return quantize(model, calibration, method=method, example_size=size, keep_float=list(keep),
                            weight_type="int8", reduce_range=reduce_range)

    def openvino(method: str, keep: Sequence[str]) -> Any:
        from segzoo.deploy.openvino import quantize_openvino
        from segzoo.inference.runtime import OpenVinoModel

        path = work / f"int8-{len(list(work.glob('*.xml')))}.xml"
        quantize_openvino(model, calibration, path, example_size=size, keep_float=list(keep))
        return OpenVinoModel.load(path)

    return {"onnxruntime": onnxruntime, "openvino": openvino}[backend]


def random_crop(image: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A ``side`` x ``side`` window of an (H, W, C) image at a random place, edge pixels repeated where the image is
    smaller (as tiled prediction pads). Calibrating on windows of one size bounds memory (onnxruntime's histogram
    calibrators keep every intermediate tensor of every image: more than 24 GiB for 16 full-resolution aerial
    tiles) and lets those calibrators stack the images."""
    pad = [(0, max(0, side - image.shape[0])), (0, max(0, side - image.shape[1])), (0, 0)]
    image = np.pad(image, pad, mode="edge")
    top = int(rng.integers(0, image.shape[0] - side + 1))
    left = int(rng.integers(0, image.shape[1] - side + 1))
    return np.ascontiguousarray(image[top:top + side, left:left + side])


def choose_recipe(model: Any, recipe: Recipe, name: str, size: tuple[int, int], metric: str, *,
                  n_calibration: int = 32, n_check: int = 16, n_holdout: int = 32, depth: int = 4,
                  max_keep: int = 3, target: float = 0.5, repeats: int = 10, seed: int = 0, crop: int = 0,
                  methods: Sequence[str] = CALIBRATION_METHODS, backend: str = "onnxruntime",
                  reduce_range: bool = False, keep_floor: Sequence[str] = ()) -> dict[str, Any]:
    """The INT8 recipe of one weight for ``backend``: training images drawn at random with ``seed`` into
    calibration, sweep-check (the sensitivity sweep's agreement) and holdout (chooses the method and when to stop
    keeping layers) sets. ``crop`` > 0 calibrates and sweeps on one random ``crop``-pixel window per image; holdout
    and val are always scored on whole images. The sweep runs in onnxruntime (minmax for OpenVINO, whose NNCF
    calibration is its one method); its ranking orders the layers the chosen backend then keeps. ``reduce_range``:
    the recipe of onnxruntime's 7-bit weights, for CPUs without VNNI (recorded as ``onnxruntime-no-vnni``).
    ``keep_floor``: modules every candidate keeps in float (the 8-bit recipe's, for 7-bit weights: coarser weights
    never make a layer less sensitive); the sweep adds to them."""
    if reduce_range and backend != "onnxruntime":
        raise ValueError("reduce_range (7-bit weights) is onnxruntime's")
    key = NO_VNNI if reduce_range else backend
    model = model.float().eval()
    methods = ("nncf",) if backend == "openvino" else tuple(methods)
    train = build_pairs(recipe.data, "train")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    window = (lambda image: random_crop(image, crop, rng)) if crop > 0 else (lambda image: image)
    calibration = [window(read_image(train[i][0])) for i in order[:n_calibration]]
    check = [window(read_image(train[i][0])) for i in order[n_calibration:n_calibration + n_check]]
    holdout = _dataset(recipe, [train[i] for i in order[n_calibration + n_check:n_calibration + n_check + n_holdout]])
    val = _dataset(recipe, build_pairs(recipe.data, "val"))
    with torch.inference_mode():
        fp32 = {"val": score(lambda t: class_ids(model(t)), val, model, metric)["metric"],
                "train_holdout": score(lambda t: class_ids(model(t)), holdout, model, metric)["metric"]}

    with tempfile.TemporaryDirectory(prefix="segzoo-int8-recipe-") as tmp:
        build = int8_builder(backend, model, calibration, size, Path(tmp), reduce_range)

        def run(method: str, keep: Sequence[str]) -> dict[str, Any]:
            row = _candidate(model, build(method, keep), keep, val, holdout, metric, size, repeats)
            row["val_drop"] = round(fp32["val"] - row["val"], 2)
            row["train_holdout_drop"] = round(fp32["train_holdout"] - row["train_holdout"], 2)
            print(f"{name} {key} {method:10} keep {list(keep)}: val drop {row['val_drop']:+.2f}, "
                  f"train-holdout drop {row['train_holdout_drop']:+.2f}, {row['latency_ms']} ms", flush=True)
            return row

        floor = list(keep_floor)
        by_method = {method: run(method, floor) for method in methods}
        chosen = min(by_method, key=lambda m: by_method[m]["train_holdout_drop"])
        steps = [by_method[chosen]]
        sweep = None
        if steps[-1]["train_holdout_drop"] > target and max_keep > 0:
            sweep = sensitivity(model, calibration, check, depth=depth, example_size=size,
                                method="minmax" if backend == "openvino" else chosen, reduce_range=reduce_range)
            keep = list(floor)
            for group in [r["group"] for r in sweep["groups"] if r["gain"] > 0 and r["group"] not in floor][:max_keep]:
                if steps[-1]["train_holdout_drop"] <= target:
                    break
                keep.append(group)
                steps.append(run(chosen, keep))
    best = min(steps, key=lambda r: (r["train_holdout_drop"] > target, len(r["kept_float_modules"]),
                                     r["train_holdout_drop"]))
    weights = {"weight_type": "int8", "reduce_range": True} if reduce_range else {}
    return {"weights": name, "backend": key, "metric": metric, "image_size": list(size), "fp32": fp32,
            "calibration_images": n_calibration, "check_images": n_check, "calibration_crop": crop or None,
            "holdout_images": len(holdout), "keep_floor": floor,
            "methods": by_method, "chosen_method": chosen, "sensitivity": sweep, "keep_steps": steps,
            "recipe": {"method": chosen, "keep_float": best["kept_float_modules"], "calibration_crop": crop or None,
                       **weights},
            "result": best,
            "target_drop": target}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="*", help="zoo names model.tag (default: every manifest row)")
    parser.add_argument("--depth", type=int, default=4, help="module-name depth of the sensitivity sweep's groups")
    parser.add_argument("--max-keep", type=int, default=3, help="most layer groups kept in float")
    parser.add_argument("--calibration", type=int, default=32, help="training images calibrated on")
    parser.add_argument("--check", type=int, default=16, help="other training images the sweep is judged on")
    parser.add_argument("--holdout", type=int, default=32, help="other training images that choose the recipe")
    parser.add_argument("--crop", type=int, default=0, help="calibrate on one random window of this side per image "
                        "(0: whole images)")
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "openvino"])
    parser.add_argument("--without-vnni", action="store_true",
                        help="onnxruntime's recipe with 7-bit weights, for CPUs without VNNI (onnxruntime-no-vnni)")
    parser.add_argument("--methods", nargs="+", default=list(CALIBRATION_METHODS), choices=CALIBRATION_METHODS)
    parser.add_argument("--output", default="benchmarks/results/int8_recipe.json")
    args = parser.parse_args(argv)
    try:
        rows = manifest_rows(args.weights)
    except ValueError as exc:
        parser.error(str(exc))
    cpu = cpu_description()
    command = " ".join(["python -m benchmarks.int8_recipe", *(argv if argv is not None else sys.argv[1:])])
    result: dict[str, Any] = {}
    for name, row in rows.items():  # written after each weight: a run cut short keeps what it measured
        model = segzoo.from_pretrained(name)
        metric = headline_metric(row["metrics"]["headline"], list(model.meta.class_names or []))
        floor = (row.get("int8", {}).get("onnxruntime") or {}).get("keep_float", []) if args.without_vnni else []
        entry = choose_recipe(model, Recipe.load(row["recipe"]), name, tuple(row["image_size"]), metric,
                              n_calibration=args.calibration, n_check=args.check, n_holdout=args.holdout,
                              depth=args.depth, max_keep=args.max_keep, crop=args.crop, methods=args.methods,
                              backend=args.backend, reduce_range=args.without_vnni, keep_floor=floor)
        result = write_result(merge_results(Path(args.output), [{**entry, "cpu": cpu, "command": command}]),
                              args.output, ["recipes"])
    return result


def merge_results(path: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The results file with ``entries`` replacing those of the same weights and backend (runs of one weight or
    backend at a time accumulate; each entry names the CPU it ran on). ``commands`` maps each entry to the command
    that made it: an entry's own ``command``, else the one the file recorded for it."""
    import json

    previous = json.loads(path.read_text()) if path.is_file() else {}
    key = lambda e: f"{e['weights']} {e.get('backend', 'onnxruntime')}"  # noqa: E731
    fresh = {key(e) for e in entries}
    kept = [e for e in previous.get("weights", []) if key(e) not in fresh]
    merged = sorted(kept + entries, key=key)
    old_commands = previous.get("commands", {})
    commands = {key(e): e.get("command") or old_commands.get(key(e)) for e in merged}
    return {"weights": merged, "recipes": {key(e): e["recipe"] for e in merged},
            "commands": {k: v for k, v in commands.items() if v}}


if __name__ == "__main__":
    main()
