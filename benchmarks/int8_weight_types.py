"""INT8 weight types by measure: for each zoo weight, onnxruntime INT8 with signed 8-bit weights (what VNNI and AMX
CPUs run), signed 7-bit weights (``reduce_range``: what CPUs without VNNI ran to avoid AVX2's u8 x s8 saturation)
and unsigned 8-bit weights (u8 x u8: a kernel without that saturation on any CPU), each calibrated with the
weight's recorded recipe on training images, scored on val and on training images calibration never saw.

Each variant's integer arithmetic is exact on the CPUs that run it (signed 8-bit only with VNNI / AMX), so its
accuracy measured here holds on an AVX2-only CPU too; its speed does not, and is recorded with this CPU named.
The choice for CPUs without VNNI is made on the training holdout (val chooses nothing):

    SEGZOO_DATA=../shared/data python -m benchmarks.int8_weight_types [--weights unet_mnv2.nuclei ...]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import segzoo
from benchmarks._report import cpu_description, write_result
from benchmarks.deploy import _dataset, _median_ms, headline_metric, manifest_rows, score
from benchmarks.int8_recipe import random_crop
from segzoo.core.outputs import class_ids
from segzoo.data.dataset import build_pairs
from segzoo.data.masks import read_image
from segzoo.deploy.quantize import quantize
from segzoo.deploy.recipes import zoo_int8_recipe
from segzoo.training.recipe import Recipe

RESULTS = "benchmarks/results/int8_weight_types.json"
VARIANTS = {"int8": {"weight_type": "int8", "reduce_range": False},
            "int8 7-bit": {"weight_type": "int8", "reduce_range": True},
            "uint8": {"weight_type": "uint8", "reduce_range": False}}
WITHOUT_VNNI = ("int8 7-bit", "uint8")  # what a CPU without VNNI may run without saturation


def measure_weight(name: str, row: dict[str, Any], n_calibration: int = 32, n_holdout: int = 32, seed: int = 0,
                   repeats: int = 10) -> dict[str, Any]:
    """One zoo weight: val and train-holdout scores of fp32 and of each INT8 weight variant, and latencies here."""
    model = segzoo.from_pretrained(name).float().eval()
    metric = headline_metric(row["metrics"]["headline"], list(model.meta.class_names or []))
    recipe = Recipe.load(row["recipe"])
    size = tuple(row["image_size"])
    int8 = zoo_int8_recipe(model, "onnxruntime") or {"method": "minmax", "keep_float": [], "calibration_crop": None}
    train = build_pairs(recipe.data, "train")
    order = np.random.default_rng(seed).permutation(len(train))
    rng = np.random.default_rng(seed)
    crop = int8.get("calibration_crop")
    calibration = [random_crop(read_image(train[i][0]), crop, rng) if crop else read_image(train[i][0])
                   for i in order[:n_calibration]]
    holdout = _dataset(recipe, [train[i] for i in order[n_calibration:n_calibration + n_holdout]])
    val = _dataset(recipe, build_pairs(recipe.data, "val"))
    with torch.inference_mode():
        fp32 = {"val": score(lambda t: class_ids(model(t)), val, model, metric)["metric"],
                "train_holdout": score(lambda t: class_ids(model(t)), holdout, model, metric)["metric"]}
    rows = {}
    for variant, options in VARIANTS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            q = quantize(model, calibration, method=int8["method"], keep_float=int8["keep_float"], example_size=size,
                         **options)
        ids = lambda t, q=q: class_ids(q(t))  # noqa: E731
        scores = {"val": score(ids, val, model, metric), "train_holdout": score(ids, holdout, model, metric)}
        rows[variant] = {
            "val": scores["val"]["metric"], "val_iou": scores["val"]["iou"],
            "train_holdout": scores["train_holdout"]["metric"],
            "val_drop": round(fp32["val"] - scores["val"]["metric"], 2),
            "train_holdout_drop": round(fp32["train_holdout"] - scores["train_holdout"]["metric"], 2),
            "latency_ms_here": round(_median_ms(q, torch.randn(1, model.in_channels, *size), repeats), 1)}
        print(f"{name} {variant:11} val drop {rows[variant]['val_drop']:+.2f}  train-holdout drop "
              f"{rows[variant]['train_holdout_drop']:+.2f}  {rows[variant]['latency_ms_here']} ms here", flush=True)
    choice = min(WITHOUT_VNNI, key=lambda v: rows[v]["train_holdout_drop"])
    return {"weights": name, "metric": metric, "image_size": list(size), "recipe": int8, "fp32": fp32,
            "calibration_images": n_calibration, "holdout_images": len(holdout), "variants": rows,
            "chosen_without_vnni": choice}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="*", help="zoo names model.tag (default: every manifest row)")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args(argv)
    try:
        rows = manifest_rows(args.weights)
    except ValueError as exc:
        parser.error(str(exc))
    entries = [measure_weight(name, row) for name, row in rows.items()]
    votes = [e["chosen_without_vnni"] for e in entries]
    mean_drop = {v: round(float(np.mean([e["variants"][v]["train_holdout_drop"] for e in entries])), 2)
                 for v in WITHOUT_VNNI}
    command = " ".join(["python -m benchmarks.int8_weight_types", *(argv if argv is not None else sys.argv[1:])])
    result = {"cpu": cpu_description(), "command": command, "weights": entries,
              "mean_train_holdout_drop": mean_drop, "votes_without_vnni": {v: votes.count(v) for v in WITHOUT_VNNI}}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    return write_result(result, args.output, ["mean_train_holdout_drop", "votes_without_vnni"])


if __name__ == "__main__":
    main()
