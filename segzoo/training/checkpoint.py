"""Training checkpoints: segzoo weights plus the state needed to resume exactly.

A checkpoint is a folder: ``model.safetensors`` (an ordinary segzoo weights file,
loadable with ``segzoo.from_pretrained``), ``training_state.pt`` (optimiser,
scheduler, scaler, EMA, position, RNG states; plain tensors and numbers, read
with ``weights_only=True``) and JSON records of the recipe and transforms. The
folder is written beside its final name and swapped in with renames, so weights
and state always belong to the same step and a crash never loses the previous
good checkpoint.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segzoo.core.errors import MissingFileError
from segzoo.core.io import atomic_folder, load_weights_only
from segzoo.storage.format import WEIGHTS_NAME, read_weights, write_weights

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "STATE_NAME", "WEIGHTS_NAME"]

STATE_NAME = "training_state.pt"


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, model: Any, state: dict[str, Any], extras: dict[str, Any]) -> None:
    """Write the checkpoint folder as a whole (``segzoo.core.io.atomic_folder``): a crash leaves the previous one."""
    with atomic_folder(Path(directory), keep_others=False) as tmp:
        write_weights(model, tmp / WEIGHTS_NAME)
        buffer = io.BytesIO()  # torch.save on a full disk fails with an opaque RuntimeError; Python's write names it
        torch.save(state, buffer)
        (tmp / STATE_NAME).write_bytes(buffer.getvalue())
        for name, value in extras.items():
            (tmp / name).write_text(json.dumps(value, indent=2, default=str) + "\n")


def _set_aside(directory: Path) -> Path | None:
    """The previous checkpoint that a swap by two renames (platforms without an atomic exchange) set aside,
    where a crash came between the renames."""
    found = sorted(directory.parent.glob(f".{directory.name}.*.old/{directory.name}"))
    return found[-1] if found else None


def load_checkpoint(directory: Path) -> tuple[Any, dict[str, Any]]:
    """``(WeightsFile, training state)``; falls back to the previous folder if a swap was interrupted."""
    directory = Path(directory)
    if not directory.exists() and _set_aside(directory) is not None:
        directory = _set_aside(directory)
    if not (directory / STATE_NAME).is_file() or not (directory / WEIGHTS_NAME).is_file():
        raise MissingFileError(f"{str(directory)!r} is not a training checkpoint ({WEIGHTS_NAME} + {STATE_NAME})")
    weights = read_weights(directory / WEIGHTS_NAME)
    state = load_weights_only(directory / STATE_NAME, "training state")
    return weights, state
