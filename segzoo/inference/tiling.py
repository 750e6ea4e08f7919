"""Sliding-window and test-time-augmented prediction for images larger than a training crop.

The image is cut into ``tile`` x ``tile`` windows overlapping by ``overlap`` (the last window in each direction is
aligned with the image's edge), windows are run in batches, and their class probabilities are blended with a
smooth weight that falls towards each window's border, so that seams do not show. Test-time augmentation runs the
same over flipped (``tta``) and rescaled (``scales``) views and averages the probabilities. Memory is bounded by
the tile and the batch, plus one probability map of the image: about ``4 * (classes + 1) * H * W`` bytes.

A model that only runs at one input size (a static export, such as Swin-UNet's) predicts through ``window``: every
view is cut into windows of exactly that size, padded by edge replication where the view is smaller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from segzoo.core.errors import InvalidTypeError, InvalidValueError
from segzoo.core.outputs import probabilities

__all__ = [
    "TTA_VIEWS", "predict_probs", "sliding_window", "fixed_windows", "pad_to_at_least", "window_weight",
    "window_starts", "check_options",
]

TTA_VIEWS = ("hflip", "vflip")
_FLIP_DIMS = {"hflip": (-1,), "vflip": (-2,)}

Logits = Callable[[torch.Tensor], torch.Tensor]


MAX_WINDOW_REPEATS = 36  # windows computing each pixel this many times (overlap 0.83) or fewer; beyond is waste


def window_stride(tile: int, overlap: float) -> int:
    """The step between neighbouring windows of ``tile`` pixels that overlap by ``overlap``."""
    return max(1, round(tile * (1 - overlap)))


def check_window_repeats(tile: tuple[int, int], overlap: float, what: str) -> None:
    """Windows that would compute each pixel more than ``MAX_WINDOW_REPEATS`` times (a window per pixel at
    ``tile=16, overlap=0.99``) are an error naming the options and a bound that works."""
    repeats = math.prod(side / window_stride(side, overlap) for side in tile)
    if repeats > MAX_WINDOW_REPEATS:
        most = 1 - 1 / math.sqrt(MAX_WINDOW_REPEATS)
        raise InvalidValueError(f"{what} with overlap {overlap} computes every pixel about {repeats:.0f} times "
                                f"(windows {window_stride(tile[0], overlap)} px apart); at most {MAX_WINDOW_REPEATS} "
                                f"is allowed: use an overlap of at most {most:.2f}")


def check_options(tile: int | None, overlap: float, tta: Sequence[str], scales: Sequence[float], batch: int) -> None:
    """An error naming the first option that cannot work (of the wrong type, or out of range)."""
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 16):
        raise InvalidValueError(f"tile must be an integer of at least 16 pixels (or None), got {tile!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise InvalidValueError(f"overlap must be a number in [0, 1), got {overlap!r}")
    if isinstance(tta, str) or not isinstance(tta, (list, tuple)):
        raise InvalidTypeError(f"tta takes a list of views such as ('hflip',), got {tta!r}"
                               + (f"; write ({tta!r},)" if isinstance(tta, str) else ""))
    if isinstance(scales, (str, int, float)) or not isinstance(scales, (list, tuple)):
        raise InvalidTypeError(f"scales takes a list of numbers such as (0.75, 1.0, 1.25), got {scales!r}")
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise InvalidTypeError(f"batch must be a whole number of windows, got {batch!r}")
    unknown = [v for v in tta if v not in TTA_VIEWS]
    if unknown:
        raise InvalidValueError(f"unknown test-time augmentation(s) {unknown}; available: {list(TTA_VIEWS)}")
    if not scales or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.05 <= s <= 8 for s in scales):
        raise InvalidValueError(f"scales must be numbers from 0.05 to 8, got {list(scales)!r}")
    if batch < 1:
        raise InvalidValueError(f"batch must be at least 1, got {batch!r}")
    if tile is not None:
        check_window_repeats((tile, tile), overlap, f"tile {tile}")


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of windows of ``tile`` covering ``length``; the last one ends exactly at the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def window_weight(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(height, width)`` blending weight: a raised cosine in each direction, 1 in the centre, never below 0.05 at
    the border (so that pixels only one window covers keep a defined value)."""
    def ramp(n: int) -> torch.Tensor:
        t = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n
        return 0.05 + 0.95 * torch.sin(math.pi * t)

    return ramp(height)[:, None] * ramp(width)[None, :]


def _probs(fn: Logits, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities of ``fn(x)``: softmax, or sigmoid for a single-channel (binary) model."""
    return probabilities(fn(x).float())


@torch.inference_mode()
def sliding_window(fn: Logits, image: torch.Tensor, tile: int | tuple[int, int], overlap: float = 0.25,
                   batch: int = 4) -> torch.Tensor:
    """Probabilities ``(1, K, H, W)`` of one normalised image ``(1, C, H, W)`` by blended ``tile`` windows
    (square, or ``(height, width)``; a window never exceeds the image)."""
    _, _, height, width = image.shape
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
    th, tw = min(tile_h, height), min(tile_w, width)
    check_window_repeats((tile_h, tile_w), overlap, f"windows of {tile_h}x{tile_w}")
    boxes = [(y, x) for y in window_starts(height, th, window_stride(tile_h, overlap))
             for x in window_starts(width, tw, window_stride(tile_w, overlap))]
    weight = window_weight(th, tw, image.device)
    probs = weight_sum = None
    for first in range(0, len(boxes), batch):
        chunk = boxes[first:first + batch]
        crops = torch.cat([image[..., y:y + th, x:x + tw] for y, x in chunk])
        out = _probs(fn, crops)
        if probs is None:
            probs = torch.zeros(1, out.shape[1], height, width, device=image.device)
            weight_sum = torch.zeros(height, width, device=image.device)
        for (y, x), p in zip(chunk, out):
            probs[0, :, y:y + th, x:x + tw] += p * weight
            weight_sum[y:y + th, x:x + tw] += weight
    return probs.div_(weight_sum)  # in place: the map is the largest tensor of a tiled prediction


def pad_to_at_least(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``image`` (N, C, H, W) padded at the bottom / right, edge pixels repeated, to at least ``size``."""
    pad_h, pad_w = max(0, size[0] - image.shape[-2]), max(0, size[1] - image.shape[-1])
    return F.pad(image, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else image


def fixed_windows(fn: Logits, image: torch.Tensor, window: tuple[int, int], overlap: float = 0.25,
                  batch: int = 4) -> torch.Tensor:
    """:func:`sliding_window` for an ``fn`` that only takes ``window``-sized inputs: the image is first padded (edge
    pixels repeated) to at least the window, so that every window has exactly that size."""
    height, width = image.shape[-2:]
    return sliding_window(fn, pad_to_at_least(image, window), window, overlap, batch)[..., :height, :width]


@torch.inference_mode()
def predict_probs(fn: Logits, images: torch.Tensor, *, tile: int | None = None, overlap: float = 0.25,
                  tta: Sequence[str] = (), scales: Sequence[float] = (1.0,), batch: int = 4,
                  window: tuple[int, int] | None = None) -> torch.Tensor:
    """Class probabilities ``(N, K, H, W)`` of normalised images ``(N, C, H, W)``, averaged over the identity view,
    each flip in ``tta`` and each scale in ``scales``; each view is tiled when ``tile`` is set and the view is
    larger than a tile. ``fn`` maps a batch of images to logits of the same size (a model's forward). ``window``
    (instead of ``tile``): ``fn`` takes only inputs of that (height, width); see :func:`fixed_windows`."""
    check_options(tile, overlap, tta, scales, batch)
    if window is not None and tile is not None:
        raise InvalidValueError(f"tile={tile} and window={window} exclude each other: a model that takes only "
                                f"{window[0]}x{window[1]} inputs is tiled with windows of that size")
    results = []
    for image in images.split(1):
        size = image.shape[-2:]
        total, views = None, 0
        for scale in scales:
            scaled = image if scale == 1 else F.interpolate(image, scale_factor=float(scale), mode="bilinear",
                                                            align_corners=False)
            for flip in (None, *tta):
                view = scaled.flip(_FLIP_DIMS[flip]) if flip else scaled
                if window is not None:
                    probs = fixed_windows(fn, view, window, overlap, batch)
                elif tile is not None and max(view.shape[-2:]) > tile:
                    probs = sliding_window(fn, view, tile, overlap, batch)
                else:
                    probs = _probs(fn, view)
                if flip:
                    probs = probs.flip(_FLIP_DIMS[flip])
                if probs.shape[-2:] != size:
                    probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
                total = probs if total is None else total.add_(probs)
                views += 1
        results.append(total.div_(views))
    return results[0] if len(results) == 1 else torch.cat(results)  # one image: no copy of its map
