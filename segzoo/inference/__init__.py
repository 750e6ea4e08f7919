"""Inference: the fast path and the one prediction function (fast.py), windows and TTA (tiling.py), and the
runtimes of exported files (runtime.py: ONNX and .pt2 behind the model contract, and their metadata).
May import: core, data.
"""

from __future__ import annotations

from segzoo.core.lazy import lazy_exports

_EXPORTS = {
    "optimize": "segzoo.inference.fast", "predict_classes": "segzoo.inference.fast",
    "predict_probs": "segzoo.inference.tiling",
    "OnnxModel": "segzoo.inference.runtime", "LoadedProgram": "segzoo.inference.runtime",
    "load_program": "segzoo.inference.runtime",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
