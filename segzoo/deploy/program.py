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

from segzoo.core.io import new_file_mode
from segzoo.deploy.onnx import (
    PARITY_ATOL,
    check_export_args,
    check_parity,
    check_sizes,
    dynamic_or_why_not,
    trace_input,
)
from segzoo.inference.runtime import LIMITS_FILE, META_FILE, LoadedProgram, load_program
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["export_program", "load_program", "LoadedProgram"]  # the last two live in segzoo.inference.runtime




def export_program(model: SegmentationModel, path: str | Path, *, dynamic: bool = True,
                   example_size: tuple[int, int] = (256, 320), atol: float = PARITY_ATOL,
                   uint8_input: bool = False) -> dict:
    """Export ``model`` with ``torch.export`` to ``path`` (``.pt2``), checked after a save / load round trip.
    The archive describes the program (``segzoo_meta.json``: the ``metadata_props`` of an ONNX export);
    ``uint8_input``: the program takes uint8 images and normalises them itself."""
    from segzoo.inference.runtime import Uint8Input, check_uint8_preprocessing, describe

    h, w = check_export_args(model, example_size)
    dynamic = dynamic_or_why_not(model, dynamic, (h, w))
    path = Path(path)
    model = model.eval()
    d = model.input_divisor
    example = trace_input(model, (h, w), dynamic)
    traced: torch.nn.Module = model
    if uint8_input:
        check_uint8_preprocessing(model)
        traced = Uint8Input(model, model.meta.preprocessing).eval()
        example = torch.randint(0, 256, example.shape, dtype=torch.uint8)
    shapes = {"x": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}} if dynamic else None
    program = torch.export.export(traced, (example,), dynamic_shapes=shapes)
    min_side = max(d + 1, model.encoder.program_min_side)
    limits = {"dynamic": dynamic, "min_side": min_side if dynamic else None, "size": None if dynamic else [h, w],
              "in_channels": model.in_channels}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".pt2", dir=path.parent)
    os.close(fd)
    try:
        torch.export.save(program, tmp, extra_files={LIMITS_FILE: json.dumps(limits),
                                                     META_FILE: json.dumps(describe(model, uint8_input))})
        loaded = load_program(tmp)
        sizes = check_sizes(model, (h, w), min_side) if dynamic else [(1, h, w)]
        with torch.inference_mode():
            checks = check_parity(lambda x: loaded(x).float().numpy(), model, sizes, atol,
                                  what="the exported program", uint8_input=uint8_input)
        os.chmod(tmp, new_file_mode(path))  # mkstemp's 0600 would ignore the umask
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"path": str(path), "format": "torch.export", "dynamic": dynamic, "traced_size": list(example.shape),
            "min_side": limits["min_side"], "uint8_input": uint8_input, "checks": checks}
