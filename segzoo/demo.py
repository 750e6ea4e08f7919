"""``segzoo demo``: build a synthetic dataset, train a small model for about a minute, evaluate, predict, plot."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from segzoo.errors import InvalidValueError

__all__ = ["run_demo"]


def run_demo(output: str | Path | None = None, seconds: float = 60.0, n_images: int = 240) -> dict:
    from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
    from segzoo.inference import load_for_inference, predict_files
    from segzoo.training.recipe import Recipe
    from segzoo.training.schedule import build_scheduler
    from segzoo.training.trainer import Trainer

    if n_images < 8:
        raise InvalidValueError(f"the demo needs at least 8 images (train and validation), got {n_images}")
    if not seconds > 0:
        raise InvalidValueError(f"the demo's training time must be positive, got {seconds} seconds")
    output = Path(output) if output else Path(tempfile.mkdtemp(prefix="segzoo-demo-"))
    data_root = write_shapes_dataset(output / "data", n_images=n_images, size=96)
    print(f"segzoo demo: {n_images} synthetic images ({', '.join(SHAPE_CLASSES)}) in {data_root}", flush=True)
    recipe = Recipe.from_dict({
        "model": {"decoder": "unet", "encoder": "plain",
                  "overrides": {"encoder_params": {"widths": [16, 32, 64, 128]}, "decoder_channels": [64, 32, 16],
                                "upsampling": "bilinear"}},
        "data": {"root": str(data_root), "classes": SHAPE_CLASSES, "val_fraction": 0.15},
        "augment": {"crop_size": 96, "scale": [0.75, 1.25], "colour_jitter": 0.1},
        "train": {"epochs": 1000, "batch_size": 16, "val_batch_size": 8, "lr": 3e-3, "scheduler": "cosine",
                  "loss": "ce+dice", "max_seconds": seconds, "val_every": 1},
    })
    # the learning-rate schedule must span the run: time a short epoch on this machine, then size the run
    calibration = output / ".calibration"
    probe = Recipe.from_dict({**recipe.to_dict(), "train": {**recipe.to_dict()["train"], "epochs": 1,
                                                             "max_steps_per_epoch": 4, "plots": False,
                                                             "progress": False}})
    Trainer(probe, calibration).fit()
    lines = (calibration / "metrics.jsonl").read_text().splitlines()
    rate = next(json.loads(line)["images_per_s"] for line in lines if '"train"' in line)
    per_step = recipe.train.batch_size / rate
    shutil.rmtree(calibration, ignore_errors=True)
    trainer = Trainer(recipe, output / "run")
    epochs = max(2, int(seconds / (per_step * 1.25 * trainer.steps_per_epoch)))  # 25% for validation
    recipe.train.epochs = trainer.cfg.epochs = epochs
    trainer.scheduler = build_scheduler(trainer.optimizer, trainer.cfg, epochs * trainer.steps_per_epoch)
    recipe.train.max_seconds = trainer.cfg.max_seconds = seconds * 1.5  # a hard stop on a slow machine
    print(f"segzoo demo: training for {epochs} epochs (~{seconds:.0f}s on this machine)", flush=True)
    summary = trainer.fit()
    model, transform = load_for_inference(output / "run" / "best")
    val_images = [image for image, _ in trainer.val_set.pairs[:4]]
    predictions = predict_files(model, transform, val_images, output / "predictions")
    final = {
        "best_miou": summary["best"],
        "epochs": summary["epochs"],
        "seconds": round(summary["seconds"], 1),
        "weights": str(output / "run" / "best"),
        "plots": [str(p) for p in (output / "run" / "curves.png", output / "run" / "predictions.png") if p.exists()],
        "predictions": str(output / "predictions"),
        "n_predictions": len(predictions),
    }
    (output / "demo.json").write_text(json.dumps(final, indent=2) + "\n")
    print(json.dumps(final, indent=2), flush=True)
    return final
