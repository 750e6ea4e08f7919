"""Importers: bring checkpoints trained with torchvision, smp or milesial/Pytorch-UNet into segzoo.

Each returns a segzoo model whose outputs equal the peer's (fp32, eval mode).
Checkpoint files are read only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from segzoo.convert.milesial import convert_milesial_file, from_milesial
from segzoo.convert.smp import from_smp
from segzoo.convert.torchvision import from_torchvision
from segzoo.errors import UnknownNameError

__all__ = ["from_torchvision", "from_smp", "from_milesial", "converter_for", "FILE_CONVERTERS"]

FILE_CONVERTERS: dict[str, Callable[[Path, Path], None]] = {"milesial": convert_milesial_file}


def converter_for(name: str) -> Callable[[Path, Path], None]:
    """The file-to-file importer named by a weight spec's ``convert``."""
    if name not in FILE_CONVERTERS:
        raise UnknownNameError(f"unknown importer {name!r}; available: {sorted(FILE_CONVERTERS)}")
    return FILE_CONVERTERS[name]
