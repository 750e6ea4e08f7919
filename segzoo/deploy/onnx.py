"""Export to ONNX with dynamic batch, height and width, checked against PyTorch before the file is kept.

``segzoo.export(model, "model.onnx")`` traces the model with ``torch.onnx.export(dynamo=True)`` (``torch.export``
underneath) at a batch of 2 and about ``example_size`` (see :func:`trace_input`), then runs the graph in
onnxruntime at three other sizes (:func:`check_sizes`) and compares with the PyTorch model: max abs logit
difference at most ``atol`` and identical argmax. Only then is the file moved into place; a mismatch raises
``ExportError`` and leaves nothing behind. Needs the ``export`` extra (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segzoo.core.errors import InvalidValueError, SegzooError
from segzoo.core.io import new_file_mode
from segzoo.core.outputs import class_ids
from segzoo.models.segmentation_model import SegmentationModel

__all__ = [
    "export_onnx", "check_onnx", "check_parity", "dynamic_shapes", "load_source", "ExportError", "PARITY_ATOL",
]

PARITY_ATOL = 1e-3
MAX_SIDE = 8192


class ExportError(SegzooError, RuntimeError):
    """The exported graph does not reproduce the PyTorch model; nothing was written."""


def trace_input(model: SegmentationModel, example_size: tuple[int, int], dynamic: bool) -> torch.Tensor:
    """The input an exporter traces with. Static: batch 1 at ``example_size``. Dynamic: a batch of 2 and each side
    moved off the model's input divisor, so that the trace specialises neither a batch of 1 (UPerNet's graph then
    failed in ``torch.export``: "Invalid ranges [2:1]") nor a zero padding."""
    h, w = example_size
    if not dynamic:
        return torch.randn(1, model.in_channels, h, w)
    d = model.input_divisor
    return torch.randn(2, model.in_channels, h if h % d else h + d // 2 + 1, w if w % d else w + d // 2 + 1)


def check_sizes(model: SegmentationModel, example_size: tuple[int, int], min_side: int = 1
                ) -> list[tuple[int, int, int]]:
    """The (batch, height, width) sizes a dynamic export is checked at, none of them the traced one: two off the
    input divisor (one with batch 1, one with batch 2 and about half the size, at least ``min_side``) and one that
    is a multiple of it (the most common case, and the one a guard on the padding would reject)."""
    h, w = example_size
    d = model.input_divisor
    low = max(d + 1, min_side)
    return [(1, h + d // 2 + 3, w + d + 5), (2, max(low, h // 2 + 7), max(low, w // 2 + 1)),
            (1, d * max(2, -(-h // d)), d * max(2, -(-w // d)))]


def _tie_flips(expected: np.ndarray, flipped: np.ndarray, diff: float) -> int:
    """How many of the ``flipped`` pixels (class ids that differ) are ties the logit difference explains: the
    reference's top two scores (one score's sign, for one channel) are within ``2 * diff``, so a rounding-level
    difference may legitimately swap them. Any other flip is a real disagreement."""
    if not flipped.any():
        return 0
    if expected.shape[1] == 1:
        margin = np.abs(expected[:, 0])
    else:
        top2 = np.sort(expected, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
    return int((flipped & (margin <= 2 * diff)).sum())


def check_parity(run: Callable[[torch.Tensor], np.ndarray], model: SegmentationModel,
                 sizes: Sequence[tuple[int, int, int]], atol: float = PARITY_ATOL,
                 what: str = "the exported graph", uint8_input: bool = False) -> list[dict[str, float]]:
    """Compare ``run`` (an exported form of ``model``) with ``model`` at each (batch, height, width): max abs logit
    difference at most ``atol`` and identical class ids (but for exact ties, see :func:`_tie_flips`), else
    ``ExportError`` naming the first size that fails.
    ``uint8_input``: ``run`` takes uint8 images, ``model`` their normalisation (its preprocessing)."""
    from segzoo.inference.runtime import Uint8Input, uint8_images

    reference = Uint8Input(model, model.meta.preprocessing).eval() if uint8_input else model
    g = torch.Generator().manual_seed(0)
    results = []
    for batch, height, width in sizes:
        if uint8_input:
            x = uint8_images(batch, model.in_channels, height, width, g)
        else:
            x = torch.randn(batch, model.in_channels, height, width, generator=g)
        with torch.inference_mode():
            expected = reference(x).float().numpy()
        try:
            got = np.asarray(run(x))
        except Exception as exc:  # runtimes' failures at run time (shape errors) name no common Python type
            raise ExportError(f"{what} fails at input size {batch}x{height}x{width}: {exc}") from exc
        if got.shape != expected.shape:
            raise ExportError(f"at input size {batch}x{height}x{width} {what} returns {got.shape}, "
                              f"PyTorch {expected.shape}")
        diff = float(np.abs(got - expected).max())
        same = class_ids(torch.from_numpy(got)) == class_ids(torch.from_numpy(expected))
        agree = float(same.float().mean())
        ties = _tie_flips(expected, ~same.numpy(), diff)
        results.append({"batch": batch, "height": height, "width": width, "max_abs_diff": diff, "argmax_agree": agree,
                        "tie_flips": ties})
        if diff > atol or int((~same).sum()) > ties:
            raise ExportError(f"at input size {batch}x{height}x{width} {what} differs from PyTorch: "
                              f"max abs logit difference {diff:.2e} (allowed {atol:.0e}), argmax agreement {agree:.4f}")
    return results


def check_onnx(path: str | Path, model: SegmentationModel, sizes: Sequence[tuple[int, int, int]],
               atol: float = PARITY_ATOL, uint8_input: bool = False) -> list[dict[str, float]]:
    """Run ``path`` in onnxruntime at each (batch, height, width) and compare with ``model`` (:func:`check_parity`)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return check_parity(lambda x: session.run(None, {name: x.numpy()})[0], model, sizes, atol,
                        uint8_input=uint8_input)


def dynamic_shapes() -> dict[str, dict[int, Any]]:
    """Batch, height and width free (16 to MAX_SIDE pixels), for ``torch.export`` and the dynamo ONNX exporter."""
    from torch.export import Dim

    return {"x": {0: Dim("batch", min=1, max=1024), 2: Dim("height", min=16, max=MAX_SIDE),
                  3: Dim("width", min=16, max=MAX_SIDE)}}


def check_export_args(model: SegmentationModel, example_size: tuple[int, int]) -> tuple[int, int]:
    """What every exporter checks first: a segzoo model, and an example size within 16..MAX_SIDE pixels."""
    if not isinstance(model, SegmentationModel):
        raise InvalidValueError(f"export takes a segzoo SegmentationModel, got {type(model).__name__}")
    h, w = example_size
    if min(h, w) < 16 or max(h, w) > MAX_SIDE:
        raise InvalidValueError(f"example_size must be between 16 and {MAX_SIDE} pixels per side, got {example_size}")
    return int(h), int(w)


def dynamic_or_why_not(model: SegmentationModel, dynamic: bool, example_size: tuple[int, int]) -> bool:
    """``dynamic``, unless the model's decoder must export at a fixed size: then a warning that says why, and False."""
    reason = model.decoder.static_export_reason
    if dynamic and reason is not None:
        warnings.warn(f"{type(model.decoder).__name__} exports at a fixed size, batch 1 x "
                      f"{example_size[0]}x{example_size[1]} (example_size): {reason}", UserWarning, stacklevel=3)
        return False
    return dynamic


def check_opset(opset: int | None) -> None:
    """An opset segzoo can ask torch's exporter for: None (the exporter's own) or an integer ONNX defines."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or not 7 <= opset <= newest):
        raise InvalidValueError(f"ONNX opset must be an integer in 7..{newest} (this onnx's newest), got {opset!r}")


def check_written_opset(path: str | Path, opset: int | None) -> None:
    """The file holds the asked opset: torch's exporter writes its own (18) where converting down fails, and says
    so only in its log; a file of another opset than asked is refused, never kept."""
    import onnx

    if opset is None:
        return
    proto = onnx.load(str(path), load_external_data=False)
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise ExportError(f"ONNX opset {opset} was asked, but torch's exporter could only write opset {written} for "
                          "this model (its converter to older opsets failed); ask for an opset of at least "
                          f"{written}, or leave the opset out")


def export_onnx(model: SegmentationModel, path: str | Path, *, dynamic: bool = True, opset: int | None = None,
                example_size: tuple[int, int] = (256, 320), atol: float = PARITY_ATOL,
                uint8_input: bool = False) -> dict:
    """Export ``model`` to ONNX at ``path`` (see the module docstring); returns a report of the parity checks.

    The file's ``metadata_props`` describe it (classes, colours, preprocessing, input layout, config, source
    sha256: :func:`segzoo.inference.runtime.describe`). ``uint8_input``: the graph takes uint8 NCHW images 0..255 and
    normalises them itself with the model's preprocessing."""
    from segzoo.inference.runtime import Uint8Input, add_metadata, check_uint8_preprocessing, describe

    h, w = check_export_args(model, example_size)
    check_opset(opset)
    dynamic = dynamic_or_why_not(model, dynamic, (h, w))
    path = Path(path)
    model = model.eval()
    example = trace_input(model, (h, w), dynamic)
    traced: torch.nn.Module = model
    if uint8_input:
        check_uint8_preprocessing(model)
        traced = Uint8Input(model, model.meta.preprocessing).eval()
        example = torch.randint(0, 256, example.shape, dtype=torch.uint8)
    kwargs = {}
    if dynamic:
        kwargs["dynamic_shapes"] = dynamic_shapes()
    if opset is not None:
        kwargs["opset_version"] = opset
    sizes = check_sizes(model, example_size) if dynamic else [(1, h, w)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        torch.onnx.export(traced, (example,), tmp, dynamo=True, input_names=["x"], output_names=["logits"],
                          external_data=False, verbose=False, **kwargs)
        check_written_opset(tmp, opset)
        checks = check_onnx(tmp, model, sizes, atol, uint8_input=uint8_input)
        add_metadata(Path(tmp), describe(model, uint8_input))
        os.chmod(tmp, new_file_mode(path))  # mkstemp's 0600 would ignore the umask
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"path": str(path), "dynamic": dynamic, "example_size": list(example_size),
            "traced_size": list(example.shape), "uint8_input": uint8_input, "checks": checks}


def load_source(source: str) -> SegmentationModel:
    """What ``segzoo export`` exports: a weights file or folder, ``hf-hub:org/name``, ``model.tag`` (published
    weights), or a plain named model (its architecture with fresh weights, said aloud)."""
    from segzoo.api import create, from_pretrained
    from segzoo.core.registry import MODELS

    if "." not in source and "/" not in source and source in MODELS:
        print(f"segzoo export: {source!r} names an architecture: exporting it with fresh (untrained) weights; "
              f"use '{source}.<tag>' or a weights file for trained ones", flush=True)
        return create(source).eval()
    return from_pretrained(source).eval()
