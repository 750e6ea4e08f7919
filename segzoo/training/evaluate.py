"""Evaluation over a whole dataset: one confusion matrix, reduced across DDP ranks."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from segzoo.core.config import Preprocessing
from segzoo.data.normalize import normalize
from segzoo.training.metrics import ConfusionMatrix

__all__ = ["evaluate"]


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    ignore_index: int,
    device: torch.device,
    preprocessing: Preprocessing,
    amp_dtype: torch.dtype | None = None,
    loss_fn: torch.nn.Module | None = None,
    confusion: ConfusionMatrix | None = None,
    progress: bool = False,
) -> dict[str, float | list[float]]:
    """Metrics of ``model`` (a module, or any callable from normalised images to logits: an ONNX model, a
    program) over ``batches``. ``confusion``: accumulate into this matrix (to plot it afterwards); ``progress``:
    report the batches done (tqdm on a terminal, a line every few seconds otherwise)."""
    from segzoo.core.progress import progress as report

    if isinstance(model, torch.nn.Module):
        model.eval()
    cm = confusion if confusion is not None else ConfusionMatrix(num_classes, ignore_index, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    sampler = getattr(batches, "sampler", None)
    total = len(sampler) if sampler is not None else (len(batches) if hasattr(batches, "__len__") else 0)
    for images, masks in report(batches, total, "eval", enabled=progress, size=lambda batch: len(batch[0])):
        images, masks = normalize(images.to(device), preprocessing), masks.to(device).long()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)
        if loss_fn is not None:
            loss_sum += loss_fn(logits.float(), masks).double() * images.shape[0]
            count += images.shape[0]
        cm.update(logits, masks)
    cm.all_reduce()
    metrics = cm.compute()
    if loss_fn is not None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(loss_sum)
            dist.all_reduce(count)
        metrics["loss"] = float(loss_sum / count.clamp_min(1))
    return metrics
