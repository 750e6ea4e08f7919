"""Publishing a training run as a zoo weight: the weights file, its model card and picture, a manifest row.

``segzoo publish RUN --model deeplabv3plus_mnv2 --tag camvid --recipe camvid`` takes ``RUN/best`` (selected on the
validation split during training), evaluates it in fp32 at full resolution on the validation split, stores it in
fp16 when that moves the validation metric by no more than ``FP16_TOLERANCE``, measures its CPU latency, and writes
``weights/<model>.<tag>.safetensors`` with ``.md`` (model card) and ``.png`` (a few validation predictions) beside it,
its row in ``weights/manifest.json`` and the README's model-zoo table.
"""

from __future__ import annotations

import json
import math
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from segzoo.api import from_pretrained
from segzoo.core.config import ModelMeta, check_classes
from segzoo.core.errors import InvalidValueError, OutputExistsError
from segzoo.core.io import atomic_path
from segzoo.data.dataset import SegmentationDataset, build_pairs, make_loader
from segzoo.models.factory import named_config
from segzoo.models.segmentation_model import SegmentationModel
from segzoo.storage.format import write_weights
from segzoo.storage.manifest import manifest_entry, update_manifest, update_readme_table, weights_dir
from segzoo.storage.save import lineage
from segzoo.training.evaluate import evaluate
from segzoo.training.recipe import Recipe

__all__ = ["PublishInfo", "publish", "evaluate_split", "cpu_latency_ms", "CHECK_IMAGES", "FP16_TOLERANCE"]

CHECK_IMAGES = 8  # validation images the manifest's quick check is computed on (tests reproduce it)
FP16_TOLERANCE = 0.001  # largest change of the main metric (0.1 points) that fp16 storage may cause


@dataclass
class PublishInfo:
    """What the card and manifest say beyond the metrics: where the data came from, under which licence, how the
    weights were made."""

    dataset: str  # data and split, e.g. "CamVid (SegNet 11-class version), train 367 / val 101"
    license: str  # of the weights, naming the data's and the backbone's licences
    command: str  # the exact training command
    train_seconds: float | None = None  # wall time of the training run
    machine: str = ""
    image_size: tuple[int, int] = (512, 512)  # (height, width) the CPU latency is measured at
    metric: str = "miou"  # the headline metric: "miou" or "dice:<class name>"
    notes: str = ""
    recipe: str | None = None  # the recipe's name or file as given to ``segzoo train`` (tests re-evaluate with it)


def evaluate_split(model: SegmentationModel, recipe: Recipe, split: str = "val", limit: int | None = None
                   ) -> dict[str, Any]:
    """fp32 metrics of ``model`` on ``split`` of the recipe's data, one full-resolution image at a time."""

    data = recipe.data
    pairs = build_pairs(data, split)[:limit]
    dataset = SegmentationDataset(pairs, data.decoder(), recipe.augment.eval_transform())
    loader = make_loader(dataset, 1, list(range(len(dataset))), 0, ignore_index=data.ignore_index)
    metrics = evaluate(model.float().eval(), loader, data.num_classes, data.ignore_index, torch.device("cpu"),
                       model.meta.preprocessing)
    metrics["images"] = len(dataset)
    return metrics


def headline(metrics: dict[str, Any], metric: str, classes: list[str]) -> tuple[str, float]:
    """The named headline metric: ``("mIoU", value)`` or ``("Dice (nucleus)", value)``."""
    if metric == "miou":
        return "mIoU", float(metrics["miou"])
    kind, _, name = metric.partition(":")
    if kind in ("dice", "iou") and name in classes:
        return f"{'Dice' if kind == 'dice' else 'IoU'} ({name})", float(metrics[kind][classes.index(name)])
    raise InvalidValueError(f"metric {metric!r}: expected 'miou', 'dice:<class>' or 'iou:<class>' with a class of "
                            f"{classes}")


@torch.inference_mode()
def cpu_latency_ms(model: SegmentationModel, height: int, width: int, repeats: int = 5) -> float:
    """Median wall time (ms) of one eager fp32 forward pass of a 1 x 3 x height x width input on the CPU."""
    from segzoo.core.timing import median_ms

    model = model.float().eval()
    x = torch.randn(1, model.in_channels, height, width)
    return median_ms(lambda: model(x), repeats)


def _rounded(metrics: dict[str, Any], classes: list[str]) -> dict[str, float]:
    flat = {k: round(float(metrics[k]), 5) for k in ("miou", "mdice", "pixel_acc", "mean_acc")}
    for key in ("iou", "dice"):
        flat.update({f"{key}/{c}": round(float(v), 5) for c, v in zip(classes, metrics[key]) if not math.isnan(v)})
    return flat


def _card(name: str, tag: str, model: SegmentationModel, info: PublishInfo, metrics: dict[str, Any],
          recipe: Recipe, storage: str, fp32_value: float, latency: float, picture: str) -> str:
    meta, cfg = model.meta, model.config
    classes = meta.class_names or []
    colours = meta.class_colours or [None] * len(classes)
    label, value = headline(metrics, info.metric, classes)
    params = sum(p.numel() for p in model.parameters())
    pre = meta.preprocessing
    rows = "\n".join(
        f"| {i} | {c} | {'' if rgb is None else ', '.join(map(str, rgb))} | {metrics['iou'][i] * 100:.1f} "
        f"| {metrics['dice'][i] * 100:.1f} |"
        for i, (c, rgb) in enumerate(zip(classes, colours))
    )
    wall = f"{info.train_seconds / 60:.0f} min" if info.train_seconds else "not recorded"
    recipe_text = json.dumps(recipe.to_dict(), indent=2)
    made_from = "".join(f"- {line}\n" for line in lineage(meta))
    (height, width), threads = info.image_size, torch.get_num_threads()
    return f"""# {name}.{tag}

{cfg.decoder} / {cfg.encoder.name}, {params:,} parameters, trained by segzoo on {info.dataset}.

```python
import segzoo
model = segzoo.from_pretrained("{name}.{tag}")          # or segzoo.create("{name}", pretrained="{tag}")
labels = model.predict(images)                            # uint8 HxWx3 images -> class ids
```
`segzoo predict photos/ -w {name}.{tag} -o out/` writes class-id PNGs and overlays.

## Validation metrics (segzoo's metrics, fp32, full resolution, {metrics['images']} val images)
**{label}: {value * 100:.2f}**; mIoU {metrics['miou'] * 100:.2f}, mean Dice {metrics['mdice'] * 100:.2f},
pixel accuracy {metrics['pixel_acc'] * 100:.2f}, mean class accuracy {metrics['mean_acc'] * 100:.2f}.
The checkpoint was selected on this validation split; held-out test figures are not known here.

| id | class | colour (RGB) | IoU | Dice |
|---|---|---|---|---|
{rows}

![image / ground truth / prediction on validation images]({picture})

## Data and licences
- Data: {info.dataset}.
- Licence of these weights: {info.license}.
- Encoder initialised from `{meta.encoder_weights or 'random'}` (provenance only: loading reads this file alone).
{made_from}
## Preprocessing
RGB, scaled to [{pre.input_range[0]:g}, {pre.input_range[1]:g}], normalised with mean {list(pre.mean)} and std
{list(pre.std)} (stored in the file; `model.predict` applies it).

## Training
- Command: `{info.command}`
- Wall time: {wall} on {info.machine or platform.processor() or platform.machine()}.
- Storage: {storage}; fp32 {label} {fp32_value * 100:.2f}.
- CPU latency: {latency:.0f} ms per {height}x{width} image (batch 1, eager fp32, {threads} threads).
{info.notes}
<details><summary>Recipe</summary>

```json
{recipe_text}
```
</details>
"""


def _storage(model: SegmentationModel, recipe: Recipe, info: PublishInfo, fp16: bool
             ) -> tuple[str, torch.dtype | None, dict[str, Any], float]:
    """``(storage note, dtype, metrics, fp32 headline)``: fp16 when it moves the headline metric by at most
    ``FP16_TOLERANCE``, else fp32; ``metrics`` are those of the stored weights."""
    classes = list(recipe.data.classes)
    fp32 = evaluate_split(model, recipe)
    label, fp32_value = headline(fp32, info.metric, classes)
    if not fp16:
        return "fp32", None, fp32, fp32_value
    with tempfile.TemporaryDirectory() as tmp:
        half = from_pretrained(write_weights(model, Path(tmp) / "half.safetensors", dtype=torch.float16))
        half_metrics = evaluate_split(half, recipe)
    change = abs(headline(half_metrics, info.metric, classes)[1] - fp32_value)
    if change > FP16_TOLERANCE:
        print(f"segzoo publish: fp16 moves {label} by {change * 100:.3f} points; storing fp32", flush=True)
        return "fp32", None, fp32, fp32_value
    return f"fp16 ({label} moves by {change * 100:.3f} points)", torch.float16, half_metrics, fp32_value


def publish(run: str | Path, name: str, tag: str, recipe: Recipe, info: PublishInfo,
            out_dir: str | Path | None = None, fp16: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Publish ``run/best`` as ``<out_dir>/<name>.<tag>.safetensors`` (see the module docstring); returns the
    manifest row. Weights already published under ``name.tag`` are replaced only with ``overwrite``."""
    from segzoo.training.plots import plot_predictions  # matplotlib: an optional extra

    out, stem = Path(out_dir) if out_dir is not None else weights_dir(), f"{name}.{tag}"
    if (out / f"{stem}.safetensors").exists() and not overwrite:
        raise OutputExistsError(f"{stem} is already published in {str(out)!r}; pass --overwrite to replace it")
    model = from_pretrained(Path(run) / "best")
    reference = named_config(name)
    if (model.config.decoder, model.config.encoder.name) != (reference.decoder, reference.encoder.name):
        raise InvalidValueError(f"run {str(run)!r} trained {model.config.decoder}/{model.config.encoder.name}, "
                                f"not the named model {name!r} ({reference.decoder}/{reference.encoder.name})")
    classes = list(recipe.data.classes)
    check_classes(model, classes, f"run {str(run)!r}", "the recipe")

    storage, dtype, metrics, fp32_value = _storage(model, recipe, info, fp16)
    label, value = headline(metrics, info.metric, classes)
    model.meta = ModelMeta.from_dict({
        **model.meta.to_dict(),
        "dataset": info.dataset,
        "license": info.license,
        "metrics": _rounded(metrics, classes),
        "description": f"segzoo zoo weights {stem}: {label} {value * 100:.2f} on the validation split.",
    })
    weights_path = write_weights(model, out / f"{stem}.safetensors", model.meta, dtype=dtype)
    published = from_pretrained(weights_path)  # what users get: checks, latency, picture
    check = evaluate_split(published, recipe, limit=CHECK_IMAGES)
    latency = cpu_latency_ms(published, *info.image_size)
    val_set = SegmentationDataset(build_pairs(recipe.data, "val"), recipe.data.decoder(),
                                  recipe.augment.eval_transform())
    with atomic_path(out / f"{stem}.png") as tmp_png:
        plot_predictions(published, val_set, tmp_png, torch.device("cpu"), n=3, file_format="png")
    with atomic_path(out / f"{stem}.md") as tmp_card:
        tmp_card.write_text(_card(name, tag, published, info, metrics, recipe, storage, fp32_value, latency,
                                  f"{stem}.png"))
    entry = manifest_entry(
        name, tag, weights_path,
        dataset=info.dataset, license=info.license, command=info.command,
        metrics={"headline": label, "value": round(value, 5), **_rounded(metrics, classes)},
        params=sum(p.numel() for p in published.parameters()),
        image_size=list(info.image_size), cpu_latency_ms=round(latency, 1),
        train_minutes=round(info.train_seconds / 60, 1) if info.train_seconds else None,
        storage=storage.split(" ")[0], recipe=info.recipe,
        check={"split": "val", "images": check["images"], "miou": round(float(check["miou"]), 5),
               "headline": round(headline(check, info.metric, classes)[1], 5)},
    )
    update_manifest(entry, out)
    update_readme_table(out)
    return entry
