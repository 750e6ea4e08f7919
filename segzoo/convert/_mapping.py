"""Renaming a peer's state dict into segzoo's, rule by rule, with clear errors."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segzoo.core.errors import InvalidTypeError, InvalidValueError
from segzoo.core.io import StateFit
from segzoo.encoders.weights import load_pickled_state, read_state_dict
from segzoo.models.segmentation_model import SegmentationModel

Rule = tuple[str, str]  # (regex on the peer key, replacement; rules apply in order, first match wins)

__all__ = ["Rule", "rename", "load_converted", "read_checkpoint"]


def read_checkpoint(source: Any) -> dict[str, Any]:
    """A state dict from a module, a dict or a checkpoint file (``torch.load(weights_only=True)`` only)."""
    if isinstance(source, nn.Module):
        return dict(source.state_dict())
    if isinstance(source, dict):
        return dict(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix == ".safetensors":
            return read_state_dict(path)
        obj = load_pickled_state(path)
        if not isinstance(obj, dict):
            raise InvalidValueError(f"{str(path)!r} holds {type(obj).__name__}, expected a state dict")
        return dict(obj)
    raise InvalidTypeError(f"expected a model, a state dict or a checkpoint path, got {type(source).__name__}")


def rename(state: dict[str, torch.Tensor], rules: Sequence[Rule], source: str) -> dict[str, torch.Tensor]:
    compiled = [(re.compile(p), r) for p, r in rules]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, repl in compiled:
            if pattern.match(key):
                out[pattern.sub(repl, key, count=1)] = value
                break
        else:
            raise InvalidValueError(f"{source}: no segzoo counterpart for the tensor {key!r} {tuple(value.shape)}")
    return out


def load_converted(
    model: SegmentationModel,
    state: dict[str, torch.Tensor],
    source: str,
    fixups: Sequence[Callable[[dict[str, torch.Tensor]], None]] = (),
) -> SegmentationModel:
    """Load a renamed state dict strictly; missing / extra / mis-shaped keys are named in the error."""
    for fix in fixups:
        fix(state)
    problems = StateFit.of(model.state_dict(), state).problems()
    if problems:
        raise InvalidValueError(
            f"{source}: the converted weights do not fit the inferred segzoo model ({problems}); "
            "pass arch= if the architecture was inferred wrongly"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()
