"""Evaluation over a whole dataset: one confusion matrix, reduced across DDP ranks."""

from __future__ import annotations

from typing import Iterable

import torch

from segzoo.config import Preprocessing
from segzoo.data.normalize import normalize
from segzoo.metrics import ConfusionMatrix

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
) -> dict[str, float | list[float]]:
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    for images, masks in batches:
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
