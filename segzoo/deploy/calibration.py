"""Calibration for INT8: the images (checked, cropped), onnxruntime's reader over them, the graph's float tail and
the nodes of named modules (both backends keep those in float), and entropy calibration's clipping range."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from segzoo.core.errors import InvalidTypeError, InvalidValueError
from segzoo.inference.tiling import pad_to_at_least
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["CALIBRATION_METHODS", "HISTOGRAM_METHODS", "ENTROPY_BINS", "as_uint8_chw", "centre_crop",
           "calibration_images", "centre_window", "CalibrationReader", "float_tail", "module_nodes", "kl_range"]

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")

HISTOGRAM_METHODS = ("percentile", "entropy")  # onnxruntime keeps every activation of every image for these

ENTROPY_BINS = 2048  # histogram bins of the entropy calibration (TensorRT's choice), over [-max |x|, max |x|]


def as_uint8_chw(image: Any, index: int) -> torch.Tensor:
    """One calibration image as a uint8 (C, H, W) tensor: accepts (C, H, W) tensors and (H, W, C) arrays."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3:
            raise InvalidValueError(f"calibration image {index}: expected an (H, W, C) array, got shape {image.shape}")
        image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if not isinstance(image, torch.Tensor):
        raise InvalidTypeError(f"calibration image {index}: expected a uint8 tensor or array, "
                               f"got {type(image).__name__}")
    if image.dtype != torch.uint8 or image.ndim != 3:
        raise InvalidValueError(f"calibration image {index}: expected uint8 (C, H, W), got {image.dtype} "
                                f"{tuple(image.shape)}")
    return image


def centre_crop(image: torch.Tensor, side: int) -> torch.Tensor:
    """The centre ``side`` x ``side`` window of a uint8 (C, H, W) image, edge pixels repeated where it is smaller."""
    pad_h, pad_w = max(0, side - image.shape[1]), max(0, side - image.shape[2])
    if pad_h or pad_w:
        image = F.pad(image.unsqueeze(0).float(), (0, pad_w, 0, pad_h), mode="replicate")[0].to(torch.uint8)
    top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
    return image[:, top:top + side, left:left + side].contiguous()


def calibration_images(model: SegmentationModel, calibration: Iterable[Any], method: str,
                        what: str, crop: int | None = None) -> list[torch.Tensor]:
    """The calibration images as uint8 (C, H, W) tensors (their centre ``crop`` windows if given), after checking
    the method, the count, the channels and, for histogram methods, that they have one size."""
    if method not in CALIBRATION_METHODS:
        raise InvalidValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < 8):
        raise InvalidValueError(f"calibration_crop must be a window side of at least 8 pixels, got {crop!r}")
    images = [as_uint8_chw(image, i) for i, image in enumerate(calibration)]
    if crop is not None:
        images = [centre_crop(image, crop) for image in images]
    if not images:
        raise InvalidValueError(f"{what} needs at least one calibration image")
    bad = [i for i, image in enumerate(images) if image.shape[0] != model.in_channels]
    if bad:
        raise InvalidValueError(f"calibration image(s) {bad[:5]} have {images[bad[0]].shape[0]} channels, the "
                                f"model takes {model.in_channels}")
    sizes = sorted({tuple(image.shape[1:]) for image in images})
    if method in HISTOGRAM_METHODS and len(sizes) > 1:
        raise InvalidValueError(f"{method!r} calibration needs images of one size (onnxruntime stacks every "
                                f"image's activations), got sizes {sizes[:4]}{' ...' if len(sizes) > 4 else ''}: "
                                "pass calibration_crop (--crop) for windows of one size, as tiled prediction "
                                "sees them, or use 'minmax'")
    return images


def centre_window(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The centre ``size`` window of a normalised ``(1, C, H, W)`` image, edge pixels repeated where it is smaller
    (as :func:`segzoo.inference.tiling.fixed_windows` pads at prediction)."""
    x = pad_to_at_least(x, size)
    top, left = (x.shape[-2] - size[0]) // 2, (x.shape[-1] - size[1]) // 2
    return x[..., top:top + size[0], left:left + size[1]].contiguous()


class CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over normalised images, one per call."""

    def __init__(self, inputs: Sequence[np.ndarray], name: str) -> None:
        self.inputs, self.name, self.i = inputs, name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.inputs):
            return None
        self.i += 1
        return {self.name: self.inputs[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def float_tail(path: Path) -> list[str]:
    """Names of the head's nodes and every node after it (resize to the input, crop): kept in float."""
    import onnx

    graph = onnx.load(str(path)).graph
    tensors: set[str] = set()
    names = []
    for node in graph.node:  # ONNX nodes are in topological order
        if any(i.startswith("head.") for i in node.input) or any(i in tensors for i in node.input):
            names.append(node.name)
            tensors.update(node.output)
    return names


def module_nodes(path: Path, modules: Sequence[str]) -> dict[str, list[str]]:
    """For each PyTorch module name in ``modules``, the graph's nodes whose weights are that module's or its
    children's (exported initializers keep the state-dict names); a name that matches no node is an error listing
    names that do."""
    import onnx

    graph = onnx.load(str(path)).graph
    initializers = {t.name for t in graph.initializer}
    found: dict[str, list[str]] = {name: [] for name in modules}
    for node in graph.node:
        weights = [i for i in node.input if i in initializers]
        for name in modules:
            if any(w.startswith(name + ".") for w in weights):
                found[name].append(node.name)
    missing = [name for name, nodes in found.items() if not nodes]
    if missing:
        known = sorted({w.rsplit(".", 1)[0] for n in graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm",
                        "MatMul") for w in n.input if w in initializers})
        raise InvalidValueError(f"keep_float: {missing} name no weighted layer of the exported graph; modules with "
                                f"quantizable weights are e.g. {known[:8]} (any prefix of such a name works)")
    return found


def kl_range(counts: np.ndarray, edges: np.ndarray, low: float, high: float,
             levels: int = 128) -> tuple[float, float]:
    """The clipping range of one activation by entropy calibration (TensorRT's recipe): of the windows
    ``[-t, t]`` of a histogram symmetric about zero, the one whose distribution, merged into ``levels`` bins and
    spread back, differs least (KL divergence) from the clipped original, outliers folded into the edge bins;
    then cut to the values seen (``low``, ``high``), and always containing 0."""
    counts = np.asarray(counts, dtype=np.float64)
    zero, half = counts.size // 2, levels // 2
    best, best_kl = (low, high), np.inf
    for i in range(half, zero + 1):
        start, end = zero - i, min(zero + i + 1, counts.size)
        window = counts[start:end]
        p = window.copy()
        p[0] += counts[:start].sum()
        p[-1] += counts[end:].sum()
        group = np.minimum(np.arange(window.size) * levels // window.size, levels - 1)
        nonzero = window > 0
        merged = np.bincount(group, weights=window, minlength=levels)
        spread = np.bincount(group, weights=nonzero, minlength=levels)
        q = np.where(nonzero, merged[group] / np.maximum(spread[group], 1), 0.0)
        if p.sum() == 0 or q.sum() == 0:
            continue
        p, q = p / p.sum(), q / q.sum()
        q = np.where((p > 0) & (q == 0), 1e-12, q)  # outlier mass where the clipped distribution has none
        kl = float(np.sum(p[p > 0] * np.log(p[p > 0] / q[p > 0])))
        if kl < best_kl:
            best, best_kl = (float(edges[start]), float(edges[end])), kl
    lo, hi = max(best[0], low), min(best[1], high)
    return min(lo, 0.0), max(hi, 0.0)
