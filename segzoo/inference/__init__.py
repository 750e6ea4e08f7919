"""Inference: the fast path and the one prediction function (fast.py), windows and TTA (tiling.py), and the
runtimes of exported files (runtime.py: ONNX and .pt2 behind the model contract, and their metadata).
May import: core, data.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "optimize": "segzoo.inference.fast", "predict_classes": "segzoo.inference.fast",
    "predict_probs": "segzoo.inference.tiling",
    "OnnxModel": "segzoo.inference.runtime", "LoadedProgram": "segzoo.inference.runtime",
    "load_program": "segzoo.inference.runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    from segzoo._moved import moved_attribute  # the old segzoo.inference module's names: now segzoo.cli.files

    return moved_attribute(__name__, name)
