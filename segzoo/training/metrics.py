"""Metrics from a confusion matrix accumulated over the whole dataset (never averaged per batch)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from segzoo.core.errors import InvalidValueError
from segzoo.core.outputs import class_ids

__all__ = ["ConfusionMatrix"]


class ConfusionMatrix:
    """``matrix[t, p]`` counts pixels of true class ``t`` predicted as ``p``; ignored pixels are skipped.

    Classes absent from both ground truth and predictions have an undefined IoU
    (NaN) and are left out of the means.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device = "cpu") -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred`` class ids (or logits ``(N, C, H, W)``) and ``target`` class ids of the same size."""
        if pred.ndim == target.ndim + 1:
            pred = class_ids(pred)
        if pred.shape != target.shape:
            raise InvalidValueError(
                f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}"
            )
        valid = target != self.ignore_index
        t, p = target[valid].long(), pred[valid].long()
        if t.numel() and (t.max() >= self.num_classes or t.min() < 0):
            raise InvalidValueError(
                f"target holds class ids outside 0..{self.num_classes - 1}: {t.unique().tolist()[:10]}"
            )
        n = self.num_classes
        self.matrix += torch.bincount(t * n + p, minlength=n * n).reshape(n, n).to(self.matrix.device)

    def reset(self) -> None:
        self.matrix.zero_()

    def all_reduce(self) -> None:
        """Sum the matrices of every DDP rank (a no-op outside distributed runs)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def compute(self) -> dict[str, float | list[float]]:
        m = self.matrix.double()
        tp = m.diag()
        gt = m.sum(1)
        pred = m.sum(0)
        union = gt + pred - tp
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        iou = torch.where(union > 0, tp / union, nan)
        dice = torch.where(gt + pred > 0, 2 * tp / (gt + pred), nan)
        acc = torch.where(gt > 0, tp / gt, nan)
        total = m.sum()
        return {
            "miou": float(iou.nanmean()) if (union > 0).any() else float("nan"),
            "mdice": float(dice.nanmean()) if (gt + pred > 0).any() else float("nan"),
            "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
            "mean_acc": float(acc.nanmean()) if (gt > 0).any() else float("nan"),
            "iou": iou.tolist(),
            "dice": dice.tolist(),
            "acc": acc.tolist(),
        }

    def per_class(self, names: list[str]) -> dict[str, dict[str, float]]:
        """IoU, Dice, accuracy (recall) and pixel count of each class, keyed by class name."""
        if len(names) != self.num_classes:
            raise InvalidValueError(f"{len(names)} class names for a {self.num_classes}-class confusion matrix")
        result = self.compute()
        pixels = self.matrix.sum(1).tolist()
        return {name: {"iou": result["iou"][i], "dice": result["dice"][i], "accuracy": result["acc"][i],
                       "pixels": int(pixels[i])} for i, name in enumerate(names)}


@dataclass(frozen=True)
class Monitor:
    """A validation figure to select checkpoints by, and which direction is better."""

    metric: str
    mode: str  # "max" | "min"

    # every figure ``evaluate`` reports that can be monitored, with its direction
    MODES: ClassVar[dict[str, str]] = {"miou": "max", "mdice": "max", "pixel_acc": "max", "mean_acc": "max",
                                       "loss": "min"}

    @classmethod
    def of(cls, metric: str) -> Monitor:
        if metric not in cls.MODES:
            raise InvalidValueError(f"cannot monitor {metric!r}; choose one of {sorted(cls.MODES)}")
        return cls(metric, cls.MODES[metric])

    def improved(self, value: float, best: float | None) -> bool:
        """``value`` is finite and better than ``best`` (any finite value beats None)."""
        if not math.isfinite(value):
            return False
        return best is None or (value > best if self.mode == "max" else value < best)
