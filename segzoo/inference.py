"""Prediction on image files: class-id PNGs and coloured overlays, with the model's own preprocessing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from segzoo.data.masks import read_image
from segzoo.data.normalize import normalize
from segzoo.data.pairs import IMAGE_SUFFIXES
from segzoo.errors import InvalidValueError, MissingFileError, OutputExistsError
from segzoo.outputs import class_ids
from segzoo.tiling import check_options, predict_probs

__all__ = ["load_for_inference", "predict_files", "expand_inputs", "check_classes"]


def load_for_inference(weights: str | Path):
    """``(model, eval transform)``: the evaluation transform saved beside the weights, else the default one.
    Normalisation comes from the model's preprocessing metadata, as in training. An ``.onnx`` file is an INT8
    model written by ``segzoo quantize`` (a :class:`~segzoo.deploy.QuantizedModel`, CPU only)."""
    import segzoo
    from segzoo.data.transforms import eval_preset, from_dict

    if Path(weights).suffix.lower() == ".onnx":
        from segzoo.deploy import QuantizedModel

        return QuantizedModel.load(weights), eval_preset()
    model = segzoo.from_pretrained(weights).eval()
    path = Path(weights)
    folder = path if path.is_dir() else path.parent
    saved = folder / "transforms.json"
    if saved.is_file():
        transform = from_dict(json.loads(saved.read_text())["eval"])
    else:
        transform = eval_preset()
    return model, transform


def check_classes(model: torch.nn.Module, classes: Sequence[str], model_what: str, data_what: str) -> None:
    """The model predicts exactly the data's classes (count, and names where the model has them), else an error
    saying both sides."""
    names = model.meta.class_names
    if model.num_classes != len(classes) or (names is not None and list(names) != list(classes)):
        theirs = f"{model.num_classes} classes" + (f" {list(names)}" if names is not None else "")
        raise InvalidValueError(f"{model_what} predict {theirs}, but {data_what} has {len(classes)} classes "
                                f"{list(classes)}")


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


@torch.inference_mode()
def prediction_outputs(files: Iterable[Path], output: str | Path) -> list[Path]:
    """The files ``predict_files`` writes for ``files``: ``<stem>.png`` and ``<stem>_overlay.png`` in ``output``."""
    return [Path(output) / f"{Path(f).stem}{suffix}.png" for f in files for suffix in ("", "_overlay")]


def predict_files(
    model: torch.nn.Module, transform, files: Iterable[Path], output: str | Path, device: str | torch.device = "cpu",
    alpha: float = 0.5, overwrite: bool = False, **tiling: Any,
) -> list[Path]:
    """For each image: ``<stem>.png`` (class ids, uint8) and ``<stem>_overlay.png`` (colours over the image).
    Existing files of those names are an error unless ``overwrite`` (checked before anything is written).
    ``tiling``: ``tile``, ``overlap``, ``tta``, ``scales``, ``batch`` of :func:`segzoo.tiling.predict_probs`."""
    from PIL import Image

    from segzoo.data.palette import palette

    auto = tiling.get("tile") == "auto"
    check_options(None if auto else tiling.get("tile"), tiling.get("overlap", 0.25), tiling.get("tta", ()),
                  tiling.get("scales", (1.0,)), tiling.get("batch", 4))
    files = list(files)
    taken = [str(p) for p in prediction_outputs(files, output) if p.exists()]
    if taken and not overwrite:
        raise OutputExistsError(f"{len(taken)} output file(s) exist, e.g. {taken[0]!r}; pass --overwrite "
                                "(overwrite=True) to replace them, or another output folder")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if isinstance(model, torch.nn.Module):
        model = model.to(device).eval()
    elif torch.device(device).type != "cpu":
        raise InvalidValueError(f"an INT8 ONNX model runs on the CPU (onnxruntime), not on device {str(device)!r}")
    window = getattr(model, "fixed_size", None)  # a fixed-size INT8 graph: windows of its size replace tiles
    colours = palette(model.num_classes, model.meta.class_colours)[:-1]
    written = []
    for path in files:
        image = read_image(path)
        x = transform(image=image)["image"].unsqueeze(0).to(device)
        options = {**tiling, "tile": auto_tile(x.shape[-2:])} if auto else tiling
        if window is not None:
            options = {**options, "tile": None if auto else options.get("tile"), "window": window}
        probs = predict_probs(model, normalize(x, model.meta.preprocessing), **options)
        if probs.shape[-2:] != image.shape[:2]:  # the eval transform resized: back to the file's size
            probs = torch.nn.functional.interpolate(probs, size=image.shape[:2], mode="bilinear", align_corners=False)
        pred = class_ids(probs, probabilities=True)[0].cpu().numpy()
        ids = output / f"{path.stem}.png"
        Image.fromarray(pred.astype(np.uint8)).save(ids)
        overlay = (image * (1 - alpha) + colours[pred] * alpha).astype(np.uint8)
        Image.fromarray(overlay).save(output / f"{path.stem}_overlay.png")
        written.append(ids)
    return written
