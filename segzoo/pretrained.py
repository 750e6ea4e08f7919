"""Deprecated alias: ``segzoo.pretrained`` was split into ``segzoo.storage`` (format, save, specs, manifest, Hub)
and the front door ``segzoo.api`` (``from_pretrained``). Importing names from here still works, with a
``DeprecationWarning``; it will be removed in segzoo 0.4."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    "from_pretrained": "segzoo.api",
    "save_pretrained": "segzoo.storage",
    "WeightSpec": "segzoo.storage",
    "ChecksumError": "segzoo.storage",
}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'segzoo.pretrained' has no attribute {name!r}")
    warnings.warn(f"segzoo.pretrained.{name} moved to {_MOVED[name]}.{name}; segzoo.pretrained will be removed "
                  "in segzoo 0.4", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(_MOVED[name]), name)
