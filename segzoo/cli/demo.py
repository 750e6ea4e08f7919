"""``segzoo demo``: build a synthetic dataset, train a small model for about a minute, evaluate, predict, plot."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from segzoo.core.errors import InvalidValueError

__all__ = ["run_demo"]


def run_demo(output: str | Path | None = None, seconds: float = 60.0, n_images: int = 240) -> dict:
    from segzoo.api import eval_transform, load
    from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
    from segzoo.inference.predictor import predict_files
    from segzoo.training.recipe import Recipe
    from segzoo.training.trainer import Trainer

    if n_images < 8:
        raise InvalidValueError(f"the demo needs at least 8 images (train and validation), got {n_images}")
    if not 0 < seconds < 24 * 3600:
        raise InvalidValueError(f"the demo's training time must be a positive number of seconds under a day, got "
                                f"{seconds}")
    output = Path(output) if output else Path(tempfile.mkdtemp(prefix="segzoo-demo-"))
    data_root = write_shapes_dataset(output / "data", n_images=n_images, size=96)
    print(f"segzoo demo: {n_images} synthetic images ({', '.join(SHAPE_CLASSES)}) in {data_root}", flush=True)
    settings = {
        "model": {"decoder": "unet", "encoder": "plain",
                  "overrides": {"encoder_params": {"widths": [16, 32, 64, 128]}, "decoder_channels": [64, 32, 16],
                                "upsampling": "bilinear"}},
        "data": {"root": str(data_root), "classes": SHAPE_CLASSES, "val_fraction": 0.15},
        "augment": {"crop_size": 96, "scale": [0.75, 1.25], "colour_jitter": 0.1},
        "train": {"epochs": 1, "batch_size": 16, "val_batch_size": 8, "lr": 3e-3, "scheduler": "cosine",
                  "loss": "ce+dice", "val_every": 1},
    }
    # the learning-rate schedule must span the run: time a few steps on this machine, then size the run
    probe = Trainer(Recipe.from_dict(settings), output / ".calibration")
    per_step = sorted(step["seconds"] for step in probe.run_steps(4))[1]  # the first step warms up
    epochs = max(2, int(seconds / (per_step * 1.25 * probe.steps_per_epoch)))  # 25% for validation
    shutil.rmtree(output / ".calibration", ignore_errors=True)
    # max_seconds: a hard stop on a slow machine
    settings["train"].update(epochs=epochs, max_seconds=seconds * 1.5)
    trainer = Trainer(Recipe.from_dict(settings), output / "run")
    print(f"segzoo demo: training for {epochs} epochs (~{seconds:.0f}s on this machine)", flush=True)
    summary = trainer.fit()
    model, transform = load(output / "run" / "best"), eval_transform(output / "run" / "best")
    val_images = [image for image, _ in trainer.val_set.pairs[:4]]
    predictions = predict_files(model, transform, val_images, output / "predictions", overlay_min_side=384)
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
