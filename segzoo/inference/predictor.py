"""Predicting image files: class ids of each image with the model's own preprocessing and tiling, coloured overlays,
class-id PNGs and overlays written whole; shared by ``segzoo predict``, ``segzoo eval`` and the web app. The model is
anything :func:`segzoo.load` returns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segzoo.core.config import DescribedModel, label_count
from segzoo.core.errors import InvalidValueError, MissingFileError, OutputExistsError
from segzoo.data.masks import read_image
from segzoo.data.pairs import IMAGE_SUFFIXES
from segzoo.inference.tiling import check_options

__all__ = ["place", "predict_files", "Predictor", "check_tiling", "prediction_outputs", "expand_inputs", "blend",
           "class_id_image", "auto_tile", "AUTO_TILE"]


def place(model: Any, device: str | torch.device) -> Any:
    """``model`` on ``device`` in eval mode; an ONNX model runs on the CPU only (said by name otherwise)."""
    if isinstance(model, torch.nn.Module):
        return model.to(device).eval()
    if torch.device(device).type != "cpu":
        raise InvalidValueError(f"an ONNX model runs on the CPU (onnxruntime), not on device {str(device)!r}")
    return model


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from files and folders (sorted); anything else is an error naming it."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise MissingFileError(f"folder {str(path)!r} holds no images ({sorted(IMAGE_SUFFIXES)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise MissingFileError(f"input {str(path)!r} does not exist")
    return files


# ``tile="auto"`` (the CLI's default): whole images up to AUTO_TILE_PIXELS, windows of AUTO_TILE above, where
# memory would grow with the image (see benchmarks/deploy.py for the measured accuracy and time of each)
AUTO_TILE = 512
AUTO_TILE_PIXELS = 1024 * 1024


def auto_tile(size: Sequence[int]) -> int | None:
    """The window ``tile="auto"`` uses for an image of ``size`` (H, W): None (whole) for small images."""
    return AUTO_TILE if int(size[0]) * int(size[1]) > AUTO_TILE_PIXELS else None


def prediction_outputs(files: Iterable[Path], output: str | Path) -> list[Path]:
    """The files ``predict_files`` writes for ``files``: ``<stem>.png`` and ``<stem>_overlay.png`` in ``output``.
    Two inputs that would write the same file (``x.jpg`` and ``x.png``; ``y.png`` and ``y_overlay.png``) are an
    error naming both, raised before anything is written."""
    owners: dict[Path, Path] = {}
    outputs = []
    for f in files:
        for suffix in ("", "_overlay"):
            out = Path(output) / f"{Path(f).stem}{suffix}.png"
            if out in owners:
                raise InvalidValueError(f"inputs {str(owners[out])!r} and {str(f)!r} would both write "
                                        f"{str(out)!r}; rename one, or predict them into different folders")
            owners[out] = Path(f)
            outputs.append(out)
    return outputs


def class_id_image(pred: np.ndarray, num_classes: int):
    """A PIL image of class ids: 8-bit up to 256 classes, 16-bit above (never wrapped)."""
    from PIL import Image

    num_classes = label_count(num_classes)
    if num_classes > 65536:
        raise InvalidValueError(f"class-id PNGs hold at most 65536 classes, the model has {num_classes}")
    if num_classes <= 256:
        return Image.fromarray(pred.astype(np.uint8))
    return Image.fromarray(pred.astype(np.uint16))


def check_tiling(tiling: dict[str, Any]) -> None:
    """An error naming the first tiling option (``tile``, which may be ``"auto"``, ``overlap``, ``tta``,
    ``scales``, ``batch``) that cannot work."""
    auto = tiling.get("tile") == "auto"
    check_options(None if auto else tiling.get("tile"), tiling.get("overlap", 0.25), tiling.get("tta", ()),
                  tiling.get("scales", (1.0,)), tiling.get("batch", 4))


OVERLAY_ROWS = 256  # rows blended at a time: the float temporaries stay a few MB for any image size


def blend(image: np.ndarray, colours: np.ndarray, ids: np.ndarray, alpha: float) -> np.ndarray:
    """``image * (1 - alpha) + colours[ids] * alpha`` as uint8, computed a band of rows at a time so that a large
    image costs its output (3 bytes a pixel), not float64 temporaries (over 70)."""
    out = np.empty(image.shape[:2] + (3,), np.uint8)
    for top in range(0, image.shape[0], OVERLAY_ROWS):
        rows = slice(top, top + OVERLAY_ROWS)
        band = image[rows, :, :3] * np.float32(1 - alpha) + colours[ids[rows]] * np.float32(alpha)
        out[rows] = band.astype(np.uint8)
    return out


class Predictor:
    """One image's way through prediction, shared by ``segzoo predict`` and ``segzoo app``: the eval transform,
    the fast path (``segzoo.optimize``) for a PyTorch model, :func:`segzoo.inference.fast.predict_classes`, and
    the coloured overlay with its legend."""

    def __init__(self, model: Any, transform) -> None:
        from segzoo.data.palette import palette
        from segzoo.inference.fast import optimize

        self.model, self.transform = model, transform
        # a segzoo model (config, meta, tensors) through the fast path; an exported file's runtime as it is
        self.runner = optimize(model) if isinstance(model, DescribedModel) else model
        self.window = getattr(model, "fixed_size", None)  # a fixed-size graph: windows of its size replace tiles
        labels = label_count(model.num_classes)  # a binary model predicts 0 and 1
        self.colours = palette(labels, model.meta.class_colours)[:-1]
        self.names = model.meta.class_names or [str(i) for i in range(labels)]

    def class_ids(self, image: np.ndarray, **tiling: Any) -> np.ndarray:
        """Class ids (H, W) of an RGB uint8 image (H, W, 3); ``tiling`` as ``predict_files``."""
        from segzoo.inference.fast import predict_classes

        auto = tiling.get("tile") == "auto"
        x = self.transform(image=image)["image"]
        options = {**tiling, "tile": auto_tile(x.shape[-2:])} if auto else dict(tiling)
        if self.window is not None:
            options = {**options, "tile": None if auto else options.get("tile"), "window": self.window}
        pred = predict_classes(self.runner, x, self.model.meta.preprocessing, output_size=image.shape[:2],
                               **options)
        del x  # the normalised copy: not needed beside the ids
        # the smallest integer type that holds every class id: 1 byte a pixel instead of int64's 8
        return pred.to(torch.uint8 if len(self.colours) <= 256 else torch.int32).cpu().numpy()

    def overlay(self, image: np.ndarray, pred: np.ndarray, alpha: float = 0.5, legend: bool = True,
                min_side: int | None = None) -> np.ndarray:
        """The class colours over the image, enlarged to ``min_side`` (an integer factor), with a legend of the
        classes present."""
        from segzoo.data.palette import draw_legend

        overlay = blend(image, self.colours, pred, alpha)
        if min_side and min(overlay.shape[:2]) < min_side:
            factor = -(-min_side // min(overlay.shape[:2]))
            overlay = overlay.repeat(factor, axis=0).repeat(factor, axis=1)
        if legend:
            overlay = draw_legend(overlay, self.names, self.colours, present=np.unique(pred))
        return overlay


def predict_files(
    model: Any, transform, files: Iterable[Path], output: str | Path, device: str | torch.device = "cpu",
    alpha: float = 0.5, overwrite: bool = False, progress: bool = True, legend: bool = True,
    overlay_min_side: int | None = None, **tiling: Any,
) -> list[Path]:
    """For each image: ``<stem>.png`` (class ids; 16-bit above 256 classes) and ``<stem>_overlay.png`` (colours
    over the image, with a class legend). Existing files of those names are an error unless ``overwrite``, and
    two inputs writing one name always are (checked before anything is written); each pair of files is written
    to temporary names and renamed into place, so a kill leaves no truncated PNG.

    ``model``: anything :func:`segzoo.load` returns. A :class:`~segzoo.SegmentationModel` predicts through
    the fast path (``segzoo.optimize``), every kind through :func:`segzoo.inference.fast.predict_classes`, the function
    behind ``model.predict``. ``overlay_min_side``: overlays of smaller images are enlarged (nearest neighbour, an
    integer factor) to at least this many pixels per side, to be seen. ``tiling``: ``tile`` (or ``"auto"``),
    ``overlap``, ``tta``, ``scales``, ``batch``."""
    from PIL import Image

    from segzoo.core.io import atomic_paths, check_output
    from segzoo.core.progress import progress as report

    check_tiling(tiling)
    check_output(output, "output folder", folder=True)
    files = list(files)
    outputs = prediction_outputs(files, output)
    taken = [str(p) for p in outputs if p.exists()]
    if taken and not overwrite:
        raise OutputExistsError(f"{len(taken)} output file(s) exist, e.g. {taken[0]!r}; pass --overwrite "
                                "(overwrite=True) to replace them, or another output folder")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    predictor = Predictor(place(model, device), transform)
    written = []
    for path, ids_path, overlay_path in report(zip(files, outputs[::2], outputs[1::2]), len(files), "predict",
                                               enabled=progress, ):
        image = read_image(path)
        pred = predictor.class_ids(image, **tiling)
        overlay = predictor.overlay(image, pred, alpha, legend, overlay_min_side)
        with atomic_paths([ids_path, overlay_path], replace=overwrite) as (ids_tmp, overlay_tmp):
            class_id_image(pred, model.num_classes).save(ids_tmp, format="PNG")
            Image.fromarray(overlay).save(overlay_tmp, format="PNG")
        written.append(ids_path)
    return written
