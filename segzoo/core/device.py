"""Choosing the device a command runs on: the one rule behind ``train``, ``eval`` and ``predict``."""

from __future__ import annotations

import torch

from segzoo.core.errors import InvalidValueError

__all__ = ["pick_device"]


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU) or a device that exists here; anything else is an error naming it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise InvalidValueError(f"device {name!r} is not a device name; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
                                ) from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            raise InvalidValueError(f"device {name!r} is not available here ({count} CUDA device(s)); "
                                    "use 'cpu' or 'auto'")
    elif device.type not in ("cpu", "mps", "xpu"):
        raise InvalidValueError(f"device {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device
