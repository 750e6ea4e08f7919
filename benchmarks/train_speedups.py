"""What speeds a CPU training step: channels_last, bf16 autocast, torch.compile, alone and together.

One training step is forward, cross-entropy, backward and an AdamW step on a fixed random batch. Each variant
builds a fresh model, runs ``--steps`` steps and reports the median of all but the first two (warm-up; for the
compiled variant the first step's compile time is reported separately). This is the measurement behind the zoo
recipes' ``amp: bf16`` and ``channels_last: true`` (and behind leaving ``compile`` off on the CPU).

    python -m benchmarks.train_speedups --model deeplabv3plus_mnv2 --size 352 --batch 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import segzoo
from benchmarks._report import write_result

VARIANTS = {
    "fp32": {},
    "channels_last": {"channels_last": True},
    "bf16": {"bf16": True},
    "bf16+channels_last": {"bf16": True, "channels_last": True},
    "bf16+channels_last+compile": {"bf16": True, "channels_last": True, "compile": True},
}


def step_times(model_name: str, size: int, batch: int, classes: int, steps: int, channels_last: bool = False,
               bf16: bool = False, compile: bool = False) -> list[float]:
    torch.manual_seed(0)
    model = segzoo.create(model_name, num_classes=classes).train()
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, classes, (batch, size, size))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = forward(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deeplabv3plus_mnv2")
    parser.add_argument("--size", type=int, default=352)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--output", default="benchmarks/results/train_speedups.json")
    args = parser.parse_args(argv)
    rows = {}
    for name in args.variants:
        times = step_times(args.model, args.size, args.batch, args.classes, args.steps, **VARIANTS[name])
        rows[name] = {"median_s_per_step": round(statistics.median(times[2:]), 3), "first_step_s": round(times[0], 2),
                      "steps": [round(t, 3) for t in times]}
        print(f"{name:28} {rows[name]['median_s_per_step']:.3f} s/step (first {times[0]:.1f} s)", flush=True)
    base = rows.get("fp32", {}).get("median_s_per_step")
    for row in rows.values():
        row["speedup_vs_fp32"] = round(base / row["median_s_per_step"], 2) if base else None
    result = {"benchmark": "train_speedups", "model": args.model, "size": args.size, "batch": args.batch,
              "variants": rows}
    return write_result(result, args.output, ["model", "size", "batch", "variants"])


if __name__ == "__main__":
    main()
