"""Trainer overhead: a training step through segzoo's Trainer vs the bare loop, same model and batch.

The bare loop is forward, cross-entropy, backward and AdamW step on a float batch. The
Trainer runs its own loop (uint8 batch normalised on the device, loss finiteness check,
scheduler, bookkeeping, logging) on in-memory uint8 batches, so that data decoding is
excluded from both. Rounds alternate bare / Trainer in fp32 / Trainer in bf16 autocast; the
first step of each is warm-up and the median step time is reported, with the fp32 / bf16 step
ratio and the CPU it was measured on: bf16 is native on AVX512-BF16 / AMX CPUs and emulated (far
slower) elsewhere, which is what ``train.amp: auto`` decides by.

    python -m benchmarks.train_step --model unet_r34 --size 512 --batch 8 --steps 3 --rounds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

import segzoo
from benchmarks._report import cpu_description, write_result


def in_memory_batches(n: int, batch: int, size: int, classes: int):
    """Fixed uint8 batches, as a decoded and augmented dataset would deliver them."""
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        yield (torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g),
               torch.randint(0, classes, (batch, size, size), dtype=torch.uint8, generator=g))


def bare_steps(model, batch: int, size: int, classes: int, steps: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, classes, (batch, size, size))
    times = []
    model.train()
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times[1:]


def trainer_steps(recipe, batch: int, size: int, classes: int, steps: int, out: Path) -> list[float]:
    from segzoo.training.trainer import Trainer

    trainer = Trainer(recipe, out)
    batches = in_memory_batches(steps + 1, batch, size, classes)
    return [step["seconds"] for step in trainer.run_steps(steps + 1, batches)][1:]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="unet_r34")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "train_step.json"))
    args = p.parse_args(argv)
    classes = 4
    from segzoo.data.synthetic import write_shapes_dataset
    from segzoo.training.recipe import Recipe

    runs = {"bare": [], "trainer": [], "trainer_bf16": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = write_shapes_dataset(Path(tmp) / "data", n_images=4, size=32)  # only for the recipe's val split
        recipe = Recipe.from_dict({
            "model": {"name": args.model},
            "data": {"root": str(root), "classes": ["a", "b", "c", "d"], "val_fraction": 0.25},
            "augment": {"crop_size": args.size},
            "train": {"batch_size": args.batch, "lr": 1e-3, "loss": "ce", "progress": False, "plots": False,
                      "scheduler": "poly", "epochs": 1, "amp": "none"},
        })
        bf16 = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, amp="bf16"))
        bare_model = segzoo.create(args.model, num_classes=classes)
        for r in range(args.rounds):
            runs["bare"] += bare_steps(bare_model, args.batch, args.size, classes, args.steps)
            runs["trainer"] += trainer_steps(recipe, args.batch, args.size, classes, args.steps, Path(tmp) / f"run{r}")
            with warnings.catch_warnings():  # the emulated-bf16 warning: this is the measurement behind it
                warnings.simplefilter("ignore", UserWarning)
                runs["trainer_bf16"] += trainer_steps(bf16, args.batch, args.size, classes, args.steps,
                                                      Path(tmp) / f"bf16_{r}")
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "benchmark": "train_step", "model": args.model, "size": args.size, "batch": args.batch,
        "steps_per_round": args.steps, "rounds": args.rounds, "median_step_s": med, "runs_s": runs,
        "trainer_overhead": med["trainer"] / med["bare"] - 1.0,
        "fp32_over_bf16": med["trainer"] / med["trainer_bf16"], "cpu": cpu_description(),
    }
    return write_result(result, args.output, ("median_step_s", "trainer_overhead", "fp32_over_bf16"))


if __name__ == "__main__":
    main()
