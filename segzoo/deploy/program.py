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
from segzoo.config import ModelConfig, ModelMeta
from segzoo.deploy.runtime import CONFIG_KEY
from segzoo.errors import InvalidValueError, MissingFileError
from segzoo.io import new_file_mode
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["export_program", "load_program", "LoadedProgram"]

LIMITS_FILE = "segzoo_limits.json"  # inside the .pt2 archive: the input sizes the program accepts
META_FILE = "segzoo_meta.json"  # inside the .pt2 archive: classes, preprocessing, input layout (runtime.describe)


def export_program(model: SegmentationModel, path: str | Path, *, dynamic: bool = True,
                   example_size: tuple[int, int] = (256, 320), atol: float = PARITY_ATOL,
                   uint8_input: bool = False) -> dict:
    """Export ``model`` with ``torch.export`` to ``path`` (``.pt2``), checked after a save / load round trip.
    The archive describes the program (``segzoo_meta.json``: the ``metadata_props`` of an ONNX export);
    ``uint8_input``: the program takes uint8 images and normalises them itself."""
    from segzoo.deploy.runtime import Uint8Input, check_uint8_preprocessing, describe

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
    limits = {"dynamic": dynamic, "min_side": d + 1 if dynamic else None, "size": None if dynamic else [h, w],
              "in_channels": model.in_channels}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".pt2", dir=path.parent)
    os.close(fd)
    try:
        torch.export.save(program, tmp, extra_files={LIMITS_FILE: json.dumps(limits),
                                                     META_FILE: json.dumps(describe(model, uint8_input))})
        loaded = load_program(tmp)
        sizes = check_sizes(model, (h, w)) if dynamic else [(1, h, w)]
        with torch.inference_mode():
            checks = check_parity(lambda x: loaded(x).float().numpy(), model, sizes, atol,
                                  what="the exported program", uint8_input=uint8_input)
        os.chmod(tmp, new_file_mode(path))  # mkstemp's 0600 would ignore the umask
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"path": str(path), "format": "torch.export", "dynamic": dynamic, "traced_size": list(example.shape),
            "min_side": limits["min_side"], "uint8_input": uint8_input, "checks": checks}


class LoadedProgram(torch.nn.Module):
    """A loaded program behind the model contract: ``p(x)`` logits of a normalised float batch (a uint8-input
    program is fed the uint8 image the batch came from), ``p.meta``, ``p.num_classes``; the input size is checked
    and the accepted sizes named instead of failing on a symbolic guard. ``p.module`` is the raw program."""

    def __init__(self, module: torch.nn.Module, limits: dict, source: str, meta: ModelMeta | None = None,
                 input_layout: dict | None = None, num_classes: int | None = None) -> None:
        super().__init__()
        self.module, self.limits, self.source = module, limits, source
        self.meta = meta if meta is not None else ModelMeta()
        self.input_layout = dict(input_layout or {"dtype": "float32"})
        self.num_classes = num_classes

    @property
    def uint8_input(self) -> bool:
        return self.input_layout.get("dtype") == "uint8"

    def train(self, mode: bool = True) -> LoadedProgram:
        """A program is traced in eval mode and has no other: ``eval()`` / ``train(False)`` are no-ops."""
        if mode:
            raise InvalidValueError(f"{self.source} is an inference program: it cannot be put in training mode")
        self.training = False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        fixed, low = self.limits.get("size"), self.limits.get("min_side")
        if fixed is not None and [h, w] != list(fixed):
            raise InvalidValueError(f"{self.source} was exported for {fixed[0]}x{fixed[1]} inputs only, got {h}x{w}")
        if low is not None and min(h, w) < low:
            raise InvalidValueError(f"{self.source} takes inputs of at least {low}x{low} pixels, got {h}x{w}")
        if self.uint8_input and x.dtype != torch.uint8:
            from segzoo.deploy.runtime import denormalise

            x = denormalise(x, self.meta.preprocessing)
        return self.module(x)

    def predict(self, images, *, tile: int | None = None, overlap: float = 0.25, tta=(), scales=(1.0,),
                batch: int = 4) -> torch.Tensor:
        """Class ids, as ``SegmentationModel.predict`` (uint8 images normalised with ``meta.preprocessing``)."""
        from segzoo.fast import predict_classes

        return predict_classes(self, images, self.meta.preprocessing, tile=tile, overlap=overlap, tta=tuple(tta),
                               scales=tuple(scales), batch=batch)


def load_program(path: str | Path) -> LoadedProgram:
    """A saved program as a callable module (logits of a normalised float batch) that checks the input size and
    knows its classes and preprocessing (programs exported before segzoo described them: ImageNet's defaults)."""
    from segzoo.deploy.runtime import read_description

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"exported program {str(path)!r} does not exist")
    import zipfile

    if not zipfile.is_zipfile(path):  # before torch.export.load, which logs a traceback for other files
        raise InvalidValueError(f"{str(path)!r} is not a readable torch.export program (.pt2): not a zip archive")
    extra = {LIMITS_FILE: "", META_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:  # a zip / pickle / version error: torch names no common type
        raise InvalidValueError(f"{str(path)!r} is not a readable torch.export program (.pt2): {exc}") from exc
    limits = json.loads(extra[LIMITS_FILE]) if extra[LIMITS_FILE] else {}
    source = f"exported program {str(path)!r}"
    meta, layout, num_classes = None, None, None
    if extra[META_FILE]:
        props = json.loads(extra[META_FILE])
        meta, layout = read_description(props, source)
        num_classes = ModelConfig.from_json(props[CONFIG_KEY]).num_classes if CONFIG_KEY in props else None
    return LoadedProgram(program.module(), limits, source, meta, layout, num_classes)
