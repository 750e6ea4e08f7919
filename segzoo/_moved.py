"""Old import paths of modules that moved when the tree was laid out by layer (segzoo 0.3): each old module is the
new one under its old name, with a ``DeprecationWarning``, for one release (removed in segzoo 0.4)."""

from __future__ import annotations

import importlib
import sys
import warnings

__all__ = ["alias", "moved_attribute", "MOVED", "MOVED_NAMES"]

# old path -> new path (the modules tests/test_architecture.py checks; benchmark shims need a checkout)
MOVED = {
    "segzoo.errors": "segzoo.core.errors",
    "segzoo.io": "segzoo.core.io",
    "segzoo.config": "segzoo.core.config",
    "segzoo.registry": "segzoo.core.registry",
    "segzoo.outputs": "segzoo.core.outputs",
    "segzoo.fast": "segzoo.inference.fast",
    "segzoo.tiling": "segzoo.inference.tiling",
    "segzoo.losses": "segzoo.training.losses",
    "segzoo.metrics": "segzoo.training.metrics",
    "segzoo.bench.measure": "segzoo.core.timing",
    "segzoo.bench.suite": "benchmarks.suite",
    "segzoo.bench.pairs": "benchmarks.pairs",
    "segzoo.bench.classic_unet": "tests.helpers.classic_unet",
    "segzoo.demo": "segzoo.cli.demo",
}


def alias(old: str) -> None:
    """Make the module being imported as ``old`` the module it moved to (same objects, so ``isinstance`` and
    ``except`` keep working), saying where it went."""
    new = MOVED[old]
    warnings.warn(f"{old} moved to {new}; the old path works until segzoo 0.4", DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)


# names that left a module which still exists: (old module, name) -> new module
MOVED_NAMES = {
    ("segzoo.inference", name): "segzoo.cli.files"
    for name in ("load_for_inference", "predict_files", "prediction_outputs", "expand_inputs", "check_classes",
                 "place", "auto_tile", "class_id_image", "AUTO_TILE", "AUTO_TILE_PIXELS")
}


def moved_attribute(module: str, name: str):
    """``module.name`` for a name that moved (a module ``__getattr__`` calls this), with a DeprecationWarning;
    an AttributeError for any other name."""
    new = MOVED_NAMES.get((module, name))
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(f"{module}.{name} moved to {new}.{name}; the old path works until segzoo 0.4", DeprecationWarning,
                  stacklevel=3)
    return getattr(importlib.import_module(new), name)
