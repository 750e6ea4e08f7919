"""Importers: bring checkpoints trained with torchvision, smp or milesial/Pytorch-UNet into segzoo.

Each is registered in ``segzoo.registry.CONVERTERS`` (plugins add theirs through the ``segzoo.converters`` entry
point group) and returns a segzoo model whose outputs equal the peer's (fp32, eval mode). Checkpoint files are
read only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from segzoo.convert.milesial import from_milesial
from segzoo.convert.smp import from_smp
from segzoo.convert.torchvision import from_torchvision

__all__ = ["from_torchvision", "from_smp", "from_milesial"]
