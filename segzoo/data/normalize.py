"""Normalisation of uint8 batches on the device: one fused multiply-add per element.

Datasets deliver uint8 CHW tensors (a quarter of float32's bytes through worker
processes and host-to-device copies); the training step, evaluation and
prediction normalise whole batches with the model's ``Preprocessing``, the same
metadata that travels with its weights.
"""

from __future__ import annotations

import torch

from segzoo.core.config import Preprocessing
from segzoo.core.errors import InvalidTypeError, InvalidValueError

__all__ = ["normalize", "normalize_numpy", "scale_shift"]


def scale_shift(pre: Preprocessing, channels: int) -> tuple[list[float], list[float]]:
    """Per channel, the ``scale`` and ``shift`` of ``x * scale + shift`` that normalise uint8 ``x`` (0..255) with
    ``pre``: the one formula behind every normalisation, in PyTorch and inside exported graphs."""
    lo, hi = pre.input_range
    if len(pre.mean) != channels:
        raise InvalidValueError(f"preprocessing has {len(pre.mean)} channel means, the images have {channels} channels")
    scale = [(hi - lo) / 255.0 / s for s in pre.std]
    shift = [(lo - m) / s for m, s in zip(pre.mean, pre.std)]
    return scale, shift


def normalize(images: torch.Tensor, pre: Preprocessing, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N, C, H, W)`` uint8 (0..255) -> ``dtype``: ``((x / 255) * (hi - lo) + lo - mean) / std``."""
    if images.dtype != torch.uint8:
        raise InvalidTypeError(f"normalize expects uint8 images (0..255), got {images.dtype}")
    scale, shift = scale_shift(pre, images.shape[1])
    # an HWC array seen as NCHW is strided: made contiguous first (a uint8 copy), the kernel is ~20x faster and
    # its output is the contiguous NCHW that runtimes (onnxruntime, OpenVINO) take without another copy
    images = images.contiguous()
    a = torch.tensor(scale, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    b = torch.tensor(shift, dtype=dtype, device=images.device).view(1, -1, 1, 1)
    return torch.addcmul(b, images, a)  # uint8 promotes to dtype inside the one kernel: no float copy first


def normalize_numpy(image, pre: Preprocessing) -> torch.Tensor:
    """One HWC uint8 image -> a normalised ``(1, C, H, W)`` float tensor."""
    x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).contiguous()
    return normalize(x, pre)
