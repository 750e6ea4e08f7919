"""Layer widths of structurally pruned models: read them off a model, and give a freshly built model the same
widths, so that a pruned model rebuilds from its config alone (no pruning code, no importance scores: the
recorded shapes are applied, then the weights file fills them)."""

from __future__ import annotations

import torch
from torch import nn

from segzoo.core.errors import InvalidValueError

__all__ = ["layer_widths", "apply_widths"]


def _widths(module: nn.Module) -> list[int] | None:
    if isinstance(module, nn.Conv2d):
        return [module.in_channels, module.out_channels, module.groups]
    if isinstance(module, nn.BatchNorm2d):
        return [module.num_features]
    if isinstance(module, nn.Linear):
        return [module.in_features, module.out_features]
    return None


def layer_widths(model: nn.Module, reference: nn.Module) -> dict[str, list[int]]:
    """The layers of ``model`` whose widths differ from ``reference`` (the same architecture as designed)."""
    theirs = dict(reference.named_modules())
    changed = {}
    for name, module in model.named_modules():
        ours = _widths(module)
        if ours is not None and name in theirs and ours != _widths(theirs[name]):
            changed[name] = ours
    return changed


def _resize_parameter(module: nn.Module, name: str, shape: tuple[int, ...]) -> None:
    old = getattr(module, name)
    if old is None:
        return
    new = torch.empty(shape, dtype=old.dtype, device=old.device)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(new, requires_grad=old.requires_grad))
    else:
        module.register_buffer(name, new)


def apply_widths(model: nn.Module, widths: dict[str, list[int]]) -> None:
    """Give the layers named in ``widths`` those widths (empty tensors: a weights file fills them); a name the
    model lacks or a width its layer kind does not have is an error naming it."""
    modules = dict(model.named_modules())
    for name, dims in widths.items():
        module = modules.get(name)
        if module is None or _widths(module) is None or len(dims) != len(_widths(module)):
            raise InvalidValueError(f"pruned widths name layer {name!r} ({dims}), which this architecture "
                                    f"{'lacks' if module is None else f'has as a {type(module).__name__}'}")
        if isinstance(module, nn.Conv2d):
            in_ch, out_ch, groups = dims
            if in_ch % groups or out_ch % groups:
                raise InvalidValueError(f"pruned widths of {name!r}: {in_ch} in and {out_ch} out channels do not "
                                        f"divide into {groups} groups")
            module.in_channels, module.out_channels, module.groups = in_ch, out_ch, groups
            _resize_parameter(module, "weight", (out_ch, in_ch // groups, *module.kernel_size))
            _resize_parameter(module, "bias", (out_ch,))
        elif isinstance(module, nn.BatchNorm2d):
            (n,) = dims
            module.num_features = n
            for key in ("weight", "bias", "running_mean", "running_var"):
                _resize_parameter(module, key, (n,))
        else:
            module.in_features, module.out_features = dims
            _resize_parameter(module, "weight", (dims[1], dims[0]))
            _resize_parameter(module, "bias", (dims[1],))
