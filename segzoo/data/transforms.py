"""albumentations presets, applied jointly to image and mask; serialisable with ``A.to_dict``.

Masks are only ever resampled with nearest neighbour (albumentations' mask
interpolation default, set explicitly here), and every geometric transform
applies to image and mask together.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segzoo.config import Preprocessing

__all__ = ["train_preset", "eval_preset", "to_dict", "from_dict"]


def _normalize(pre: Preprocessing):
    import albumentations as A

    span = pre.input_range[1] - pre.input_range[0]
    # Normalize computes (img / max_pixel_value - mean) / std; an input range [lo, hi] maps 255 -> hi
    mean = tuple(m / span - pre.input_range[0] / span for m in pre.mean)
    std = tuple(s / span for s in pre.std)
    return A.Normalize(mean=mean, std=std, max_pixel_value=255.0)


def train_preset(
    crop_size: int | tuple[int, int] = 512,
    scale: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
    vflip: bool = False,
    colour_jitter: float = 0.2,
    ignore_index: int = 255,
    preprocessing: Preprocessing | None = None,
):
    """Random scale, pad (image 0, mask ``ignore_index``) and crop, flips, colour jitter, normalise, to tensor."""
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2

    h, w = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    ops: list[Any] = [
        A.RandomScale(scale_limit=(scale[0] - 1.0, scale[1] - 1.0), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0),
        A.PadIfNeeded(min_height=h, min_width=w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index),
        A.RandomCrop(h, w),
    ]
    if hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    if vflip:
        ops.append(A.VerticalFlip(p=0.5))
    if colour_jitter:
        c = colour_jitter
        ops.append(A.ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(c / 4, 0.5), p=0.8))
    ops += [_normalize(preprocessing or Preprocessing()), ToTensorV2()]
    return A.Compose(ops)


def eval_preset(max_size: int | None = None, preprocessing: Preprocessing | None = None):
    """Normalise and convert; ``max_size`` resizes the longest side (the mask with nearest neighbour)."""
    import albumentations as A
    import cv2
    from albumentations.pytorch import ToTensorV2

    ops: list[Any] = []
    if max_size:
        ops.append(A.LongestMaxSize(max_size=max_size, interpolation=cv2.INTER_LINEAR,
                                    mask_interpolation=cv2.INTER_NEAREST))
    ops += [_normalize(preprocessing or Preprocessing()), ToTensorV2()]
    return A.Compose(ops)


def to_dict(transform) -> dict[str, Any]:
    import albumentations as A

    return A.to_dict(transform)


def from_dict(data: dict[str, Any]):
    import albumentations as A

    return A.from_dict(data)


def apply(transform, image: np.ndarray, mask: np.ndarray | None = None):
    """Run a preset on an image (and mask); returns ``(image_tensor, mask_tensor_or_None)``."""
    if mask is None:
        out = transform(image=image)
        return out["image"], None
    out = transform(image=image, mask=mask)
    return out["image"], out["mask"]
