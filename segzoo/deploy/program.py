"""The PyTorch-native export: a ``torch.export`` ``ExportedProgram`` with dynamic batch, height and width, saved
with ``torch.export.save`` (a ``.pt2`` file), for users who stay in PyTorch (AOTInductor, ExecuTorch, serving).

Like the ONNX path, the saved program is loaded back and compared with the model at two sizes other than the
example (max abs logit difference <= 1e-3, identical class ids) before the file is kept; a mismatch raises
``ExportError`` and leaves nothing behind. Needs nothing beyond torch.

The program takes any batch and any height and width greater than the model's input divisor (32 for most
models): at that size or below the deepest feature is one pixel, a case ``torch.export`` specialises. It is
traced at a batch of 2 and a size that needs padding, so that neither is baked in; :func:`load_program` checks
the size and names the accepted ones.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch.export import Dim

from segzoo.deploy.onnx import (
    PARITY_ATOL,
    check_export_args,
    check_parity,
    check_sizes,
    dynamic_or_why_not,
    trace_input,
)
from segzoo.errors import InvalidValueError, MissingFileError
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["export_program", "load_program"]

LIMITS_FILE = "segzoo_limits.json"  # inside the .pt2 archive: the input sizes the program accepts


def export_program(model: SegmentationModel, path: str | Path, *, dynamic: bool = True,
                   example_size: tuple[int, int] = (256, 320), atol: float = PARITY_ATOL) -> dict:
    """Export ``model`` with ``torch.export`` to ``path`` (``.pt2``), checked after a save / load round trip."""
    h, w = check_export_args(model, example_size)
    dynamic = dynamic_or_why_not(model, dynamic, (h, w))
    path = Path(path)
    model = model.eval()
    d = model.input_divisor
    example = trace_input(model, (h, w), dynamic)
    shapes = {"x": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}} if dynamic else None
    program = torch.export.export(model, (example,), dynamic_shapes=shapes)
    limits = {"dynamic": dynamic, "min_side": d + 1 if dynamic else None, "size": None if dynamic else [h, w],
              "in_channels": model.in_channels}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".pt2", dir=path.parent)
    os.close(fd)
    try:
        torch.export.save(program, tmp, extra_files={LIMITS_FILE: json.dumps(limits)})
        loaded = load_program(tmp)
        sizes = check_sizes(model, (h, w)) if dynamic else [(1, h, w)]
        with torch.inference_mode():
            checks = check_parity(lambda x: loaded(x).float().numpy(), model, sizes, atol,
                                  what="the exported program")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"path": str(path), "format": "torch.export", "dynamic": dynamic, "traced_size": list(example.shape),
            "min_side": limits["min_side"], "checks": checks}


class _SizeChecked(torch.nn.Module):
    """A loaded program that names the sizes it accepts instead of failing on a symbolic guard."""

    def __init__(self, module: torch.nn.Module, limits: dict, source: str) -> None:
        super().__init__()
        self.module, self.limits, self.source = module, limits, source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        fixed, low = self.limits.get("size"), self.limits.get("min_side")
        if fixed is not None and [h, w] != list(fixed):
            raise InvalidValueError(f"{self.source} was exported for {fixed[0]}x{fixed[1]} inputs only, got {h}x{w}")
        if low is not None and min(h, w) < low:
            raise InvalidValueError(f"{self.source} takes inputs of at least {low}x{low} pixels, got {h}x{w}")
        return self.module(x)


def load_program(path: str | Path) -> torch.nn.Module:
    """A saved program as a callable module (logits of a normalised float batch) that checks the input size."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"exported program {str(path)!r} does not exist")
    extra = {LIMITS_FILE: ""}
    program = torch.export.load(str(path), extra_files=extra)
    limits = json.loads(extra[LIMITS_FILE]) if extra[LIMITS_FILE] else {}
    return _SizeChecked(program.module(), limits, f"exported program {str(path)!r}")
