"""Weights at rest: the self-describing safetensors format, the ``save_pretrained`` folder, published weight
specs with the download cache, the manifest, Hub transfers.
May import: core (models satisfy ``core.config.DescribedModel``; nothing here builds one: loading is
``segzoo.api.from_pretrained``).
"""

from __future__ import annotations

from segzoo.core.lazy import lazy_exports

# loaded on first use, so that reading the manifest or a weight spec (``segzoo list --weights``) imports no torch
_EXPORTS = {
    "WEIGHTS_NAME": "segzoo.storage.format", "WeightsFile": "segzoo.storage.format",
    "read_weights": "segzoo.storage.format", "write_weights": "segzoo.storage.format",
    "save_pretrained": "segzoo.storage.save", "WeightSpec": "segzoo.storage.specs",
    "ChecksumError": "segzoo.storage.specs",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
