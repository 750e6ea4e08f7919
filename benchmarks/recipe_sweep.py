"""A recipe sweep: several variants of training recipes run side by side, each a ``segzoo train`` process, then
one table of each variant's best and last val readings, per class.

Made to spend a short loan of a GPU machine well (one GPU trains several small models at once, the machine's
cores feed them), and just as usable on a CPU with ``--parallel 1``. A sweep file names the variants:

    # benchmarks/sweeps/aerial.yaml
    common: [train.val_every=10]          # overrides given to every variant (optional)
    variants:
      v1: {recipe: aerial}
      lite0: {recipe: aerial, set: [model.name=unet_lite0, model.overrides.encoder_weights=tf_efficientnet_lite0.in1k]}

    SEGZOO_DATA=../shared/data SEGZOO_WEIGHTS=../shared/weights \\
        python -m benchmarks.recipe_sweep benchmarks/sweeps/aerial.yaml -o runs/sweep --parallel 6 --workers 2

The readings are the trainers' own (EMA weights where the recipe keeps them, under the recipe's AMP), chosen on
val like every run here; a winner is then trained and scored by its recipe as usual, not published from a sweep.
``sweep.json`` in the output folder records the machine (GPU and CPU), every variant's command and its readings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._report import cpu_description
from segzoo.core.errors import InvalidValueError
from segzoo.core.io import atomic_path
from segzoo.training.recipe import Recipe


@dataclass
class Variant:
    """One recipe and its overrides, trained into ``<output>/<name>``."""

    name: str
    recipe: str
    overrides: list[str] = field(default_factory=list)

    def command(self, output: Path, common: Sequence[str]) -> list[str]:
        sets = [item for value in (*common, *self.overrides) for item in ("--set", value)]
        return [sys.executable, "-m", "segzoo", "train", self.recipe, "-o", str(output / self.name), *sets]


def read_sweep(path: Path, extra: Sequence[str] = ()) -> tuple[list[str], list[Variant]]:
    """The common overrides and the variants of a sweep file; every recipe is loaded once here, so that a typo
    in any variant fails before the first one starts."""
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("variants"), dict) or not data["variants"]:
        raise InvalidValueError(f"sweep {str(path)!r} must map 'variants' to {{name: {{recipe, set}}}}")
    unknown = sorted(set(data) - {"common", "variants"})
    if unknown:
        raise InvalidValueError(f"sweep {str(path)!r}: unknown keys {unknown} (expected 'common', 'variants')")
    common = [str(v) for v in data.get("common") or []] + list(extra)
    variants = []
    for name, spec in data["variants"].items():
        if not isinstance(spec, dict) or "recipe" not in spec or set(spec) - {"recipe", "set"}:
            raise InvalidValueError(f"sweep {str(path)!r}, variant {name!r}: expected {{recipe: NAME, set: [...]}}, "
                                    f"got {spec!r}")
        variant = Variant(str(name), str(spec["recipe"]), [str(v) for v in spec.get("set") or []])
        Recipe.load(variant.recipe, [*common, *variant.overrides])
        variants.append(variant)
    return common, variants


def run_variants(variants: Sequence[Variant], common: Sequence[str], output: Path, parallel: int,
                 threads: int) -> dict[str, dict[str, Any]]:
    """Run the variants, ``parallel`` at a time, each logging to ``<output>/<name>.log``; return each one's exit
    code and wall time."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    pending, running, done = list(variants), {}, {}
    while pending or running:
        while pending and len(running) < parallel:
            variant = pending.pop(0)
            log = (output / f"{variant.name}.log").open("w")
            proc = subprocess.Popen(variant.command(output, common), stdout=log, stderr=subprocess.STDOUT, env=env)
            running[variant.name] = (proc, log, time.perf_counter())
            print(f"started {variant.name}", flush=True)
        for name, (proc, log, start) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                done[name] = {"returncode": proc.returncode, "wall_s": round(time.perf_counter() - start, 1)}
                print(f"finished {name}: exit {proc.returncode} after {done[name]['wall_s']} s", flush=True)
                del running[name]
        time.sleep(1)
    return done


def readings(folder: Path) -> dict[str, Any]:
    """A run's val readings from its ``metrics.jsonl``: the best (by mIoU) and the last, with per-class IoU, and
    the mIoU at each validation (the curve)."""
    path = folder / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    val = [row for row in rows if row.get("split") == "val"]
    train = [row for row in rows if row.get("split") == "train"]
    if not val:
        return {"epochs": train[-1]["epoch"] if train else 0}
    best = max(val, key=lambda row: row["miou"])
    pick = ("epoch", "miou", "iou")
    return {"epochs": (train or val)[-1]["epoch"], "best": {k: best[k] for k in pick},
            "last": {k: val[-1][k] for k in pick}, "curve": {row["epoch"]: round(row["miou"], 4) for row in val}}


def device_description() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"gpu": gpu, "cpu": cpu_description(), "torch": torch.__version__}


def table(results: dict[str, dict[str, Any]], classes: Sequence[str]) -> str:
    head = ["variant", "epochs", "wall s", "best mIoU", "at epoch", "last mIoU", *classes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, result in results.items():
        best, last = result.get("best"), result.get("last")
        cells = [name, str(result.get("epochs", 0)), str(result.get("wall_s", "")),
                 f"{100 * best['miou']:.1f}" if best else "-", str(best["epoch"]) if best else "-",
                 f"{100 * last['miou']:.1f}" if last else "-"]
        cells += [f"{100 * v:.1f}" for v in best["iou"]] if best else ["-"] * len(classes)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="the sweep file (YAML: common, variants)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="a folder per variant, logs, sweep.json")
    parser.add_argument("--parallel", type=int, default=1, help="variants trained at once")
    parser.add_argument("--workers", type=int, default=2, help="data-loading workers per variant")
    parser.add_argument("--threads", type=int, default=2, help="OMP threads per variant")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop every variant after this long")
    parser.add_argument("--only", nargs="*", default=None, help="run only these variants")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="one more override for every variant (after the sweep's own), e.g. for a dry run")
    args = parser.parse_args(argv)
    common, variants = read_sweep(args.sweep, args.set)
    if args.only is not None:
        missing = sorted(set(args.only) - {v.name for v in variants})
        if missing:
            raise InvalidValueError(f"--only names {missing}, not variants of {str(args.sweep)!r}")
        variants = [v for v in variants if v.name in args.only]
    common = [*common, f"train.num_workers={args.workers}"]
    if args.max_seconds:
        common.append(f"train.max_seconds={args.max_seconds}")
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    runs = run_variants(variants, common, args.output, args.parallel, args.threads)
    classes = list(Recipe.load(variants[0].recipe, [*common, *variants[0].overrides]).data.classes)
    results = {v.name: {"command": v.command(args.output, common)[1:], **runs[v.name],
                        **readings(args.output / v.name)} for v in variants}
    summary = {"sweep": str(args.sweep), "started": started, "device": device_description(),
               "parallel": args.parallel, "classes": classes, "variants": results}
    with atomic_path(args.output / "sweep.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    print(table(results, classes))
    return summary


if __name__ == "__main__":
    main()
