"""Importers of torchvision, smp, milesial/Pytorch-UNet and transformers (SegFormer) checkpoints (registered
converters), each returning a segzoo model whose outputs equal the peer's; ``.pth`` files are read with
``weights_only=True``.
May import: core, layers, encoders, decoders, storage, inference, models.
"""

from __future__ import annotations

from segzoo.convert._mapping import load_converted, read_checkpoint, rename
from segzoo.convert.milesial import from_milesial
from segzoo.convert.smp import from_smp
from segzoo.convert.torchvision import from_torchvision
from segzoo.convert.transformers import from_transformers

# the converters, and the building blocks a plugin's converter uses (rename rules, loading with a clear report)
__all__ = ["from_torchvision", "from_smp", "from_milesial", "from_transformers", "read_checkpoint", "rename",
           "load_converted"]
