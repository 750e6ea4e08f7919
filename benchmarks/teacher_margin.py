"""How much does a teacher know that its student does not? Both models scored, per class, on the student recipe's
augmented training batches (what distillation shows the student: the same crops, flips and scales) and on the
full-resolution val split. A check to run before spending a distillation budget: where the teacher is barely
better than an untaught student on the training batches, its logits carry little the labels do not.

    SEGZOO_DATA=../shared/data python -m benchmarks.teacher_margin --recipe camvid --teacher unet_lite2.camvid \\
        --student runs/kd/baseline/best --student-name "deeplabv3plus_mnv2, untaught (distill_gain baseline)"

Writes ``benchmarks/results/distill_margin/<recipe>_<teacher>.json`` (or ``--results``): each model's training-batch
and val mIoU and per-class IoU, and the teacher's margin on each.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import segzoo
from benchmarks._report import cpu_description, write_result
from segzoo.data.dataset import SegmentationDataset, build_pairs, make_loader
from segzoo.training.evaluate import evaluate
from segzoo.training.publish import evaluate_split
from segzoo.training.recipe import Recipe

RESULTS_DIR = Path("benchmarks/results/distill_margin")


def training_batches(recipe: Recipe, images: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``images`` training samples (a seeded random choice) through the recipe's training augmentation, in
    batches of its batch size: uint8 images (N, 3, H, W) and class-id masks (N, H, W). Held in memory, so that
    every model is scored on the very same crops."""
    data = recipe.data
    dataset = SegmentationDataset(build_pairs(data, "train"),
                                  data.decoder(), recipe.augment.train_transform(data.ignore_index, data.classes), seed)
    if not 0 < images <= len(dataset):
        raise ValueError(f"--images must be between 1 and the {len(dataset)} training images, got {images}")
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:images].tolist()
    return list(make_loader(dataset, recipe.train.batch_size, chosen, ignore_index=data.ignore_index))


def _percent(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"miou": round(100 * metrics["miou"], 2), "iou": [round(100 * v, 2) for v in metrics["iou"]]}


def measure(recipe: Recipe, teacher: str, student: str, images: int, seed: int = 0) -> dict[str, Any]:
    """Teacher and student on ``images`` augmented training samples and on val; margins = teacher - student."""
    sources = {"teacher": teacher, "student": student}
    models = {role: segzoo.from_pretrained(source).float().eval() for role, source in sources.items()}
    classes = list(recipe.data.classes)
    for role, model in models.items():
        if model.num_classes != len(classes):
            raise ValueError(f"{role} {sources[role]!r} predicts {model.num_classes} classes, the recipe's data has "
                             f"{len(classes)} {classes}")
    batches = training_batches(recipe, images, seed)
    with torch.inference_mode():
        train = {role: evaluate(model, batches, len(classes), recipe.data.ignore_index, torch.device("cpu"),
                                model.meta.preprocessing) for role, model in models.items()}
    scores = {role: {"training_batches": _percent(train[role]),
                     "val": _percent(evaluate_split(models[role], recipe, "val"))} for role in models}
    margin = {split: {"miou": round(scores["teacher"][split]["miou"] - scores["student"][split]["miou"], 2),
                      "iou": [round(t - s, 2) for t, s in zip(scores["teacher"][split]["iou"],
                                                               scores["student"][split]["iou"])]}
              for split in ("training_batches", "val")}
    return {"scores": scores, "margin": margin}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", required=True, help="the student's recipe (its data and training augmentation)")
    parser.add_argument("--teacher", required=True, help="zoo name, weights file or folder")
    parser.add_argument("--student", required=True, help="zoo name, weights file or folder (e.g. an untaught run)")
    parser.add_argument("--student-name", help="how the results file names the student (default: --student)")
    parser.add_argument("--images", type=int, default=48, help="augmented training samples to score")
    parser.add_argument("--seed", type=int, default=0, help="which samples and which augmentation")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    parser.add_argument("--results", help=f"results file (default: {RESULTS_DIR}/<recipe>_<teacher>.json)")
    args = parser.parse_args(argv)
    recipe = Recipe.load(args.recipe, args.set)
    result = {"cpu": cpu_description(), "recipe": args.recipe, "teacher": args.teacher,
              "student": args.student_name or args.student, "classes": list(recipe.data.classes),
              "training_images": args.images, "seed": args.seed,
              **measure(recipe, args.teacher, args.student, args.images, args.seed)}
    default = RESULTS_DIR / f"{Path(args.recipe).stem}_{re.sub(r'[^A-Za-z0-9_.-]', '_', args.teacher)}.json"
    written = write_result(result, Path(args.results) if args.results else default, ["margin"])
    for split, margin in result["margin"].items():
        print(f"{split}: teacher {result['scores']['teacher'][split]['miou']:.2f}, student "
              f"{result['scores']['student'][split]['miou']:.2f} mIoU: margin {margin['miou']:+.2f}")
    return written


if __name__ == "__main__":
    main()
