"""PNG plots: loss and metric curves, and an image / ground truth / prediction grid (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from segzoo.core.config import label_count  # noqa: E402
from segzoo.data.palette import palette  # noqa: E402

__all__ = ["plot_curves", "plot_predictions", "plot_confusion"]


def plot_curves(history: Sequence[dict[str, Any]], path: Path, monitor: str = "miou") -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train")
    val = [(h["epoch"], h["val_loss"]) for h in history if "val_loss" in h]
    if val:
        ax1.plot(*zip(*val), label="val")
    ax1.set_xlabel("epoch"), ax1.set_ylabel("loss"), ax1.legend(), ax1.set_title("loss")
    metric = [(h["epoch"], h[f"val_{monitor}"]) for h in history if f"val_{monitor}" in h]
    if metric:
        ax2.plot(*zip(*metric), marker="o")
    ax2.set_xlabel("epoch"), ax2.set_ylabel(monitor), ax2.set_title(f"validation {monitor}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _colour(mask: np.ndarray, colours: np.ndarray, ignore_index: int) -> np.ndarray:
    m = mask.astype(np.int64).copy()
    m[(m == ignore_index) | (m >= len(colours) - 1)] = len(colours) - 1
    return colours[m]


@torch.inference_mode()
def plot_predictions(model: torch.nn.Module, dataset, path: Path, device: torch.device, n: int = 4,
                     file_format: str | None = None) -> Path:
    """Rows of image / ground truth / prediction for the first ``n`` samples of ``dataset``."""
    model.eval()
    n = min(n, len(dataset))
    colours = palette(label_count(model.num_classes), model.meta.class_colours)
    ignore = dataset.decoder.ignore_index
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    for row in range(n):
        raw, _ = dataset.load(row)
        image, mask = dataset[row]
        from segzoo.core.outputs import class_ids
        from segzoo.data.normalize import normalize

        logits = model(normalize(image.unsqueeze(0).to(device), model.meta.preprocessing))
        pred = class_ids(logits)[0].cpu().numpy()
        shown = raw if raw.shape[:2] == pred.shape else None
        for col, (title, img) in enumerate(
            [("image", shown if shown is not None else np.zeros((*pred.shape, 3), np.uint8)),
             ("ground truth", _colour(mask.numpy().astype(np.int64), colours, ignore)),
             ("prediction", _colour(pred, colours, ignore))]
        ):
            axes[row][col].imshow(img)
            axes[row][col].set_title(title)
            axes[row][col].axis("off")
    from matplotlib.patches import Patch

    names = model.meta.class_names or [str(i) for i in range(label_count(model.num_classes))]
    handles = [Patch(facecolor=colours[i] / 255.0, edgecolor="black", label=name) for i, name in enumerate(names)]
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / n))
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.savefig(path, dpi=80, format=file_format)
    plt.close(fig)
    return path


def plot_confusion(matrix: torch.Tensor, names: Sequence[str], path: Path) -> Path:
    """The confusion matrix, each row (a true class) normalised to the share of its pixels predicted as each
    class, with the percentages written in the cells."""
    m = matrix.double().cpu().numpy()
    rows = m.sum(1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title("confusion (share of each true class)")
    if k <= 30:
        for t in range(k):
            for q in range(k):
                if share[t, q] >= 0.005:
                    ax.text(q, t, f"{100 * share[t, q]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if share[t, q] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
