"""Models: SegmentationModel (pad, encoder, decoder, heads, crop), the factory (``build_model(config, meta)``,
the one funnel) and the named reference designs.
May import: core, layers, encoders, decoders, storage (save_pretrained, push_to_hub), inference (predict).
"""

from __future__ import annotations

from segzoo.core.lazy import lazy_exports

# lazy: importing segzoo.models.named (registering the names) must not import torch
_EXPORTS = {
    "SegmentationModel": "segzoo.models.segmentation_model",
    "apply_overrides": "segzoo.models.factory",
    "build_model": "segzoo.models.factory",
    "create_model": "segzoo.models.factory",
    "named_config": "segzoo.models.factory",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
