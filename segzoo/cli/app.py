"""``segzoo app``: a local web app (Gradio) to see a model work on your own images, and to compare two models.

Weights load through the command line's loader and predict through its per-image path (``Predictor``), so the
page refuses what ``segzoo predict`` refuses, with the same one-line messages, and shows the same class ids.
Everything the app writes (the PNGs offered for download, Gradio's uploads) stays in one temporary folder.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segzoo.api import eval_transform, load
from segzoo.core.errors import InvalidTypeError, InvalidValueError, SegzooError
from segzoo.data.masks import PIXELS_ENV, max_image_pixels
from segzoo.inference.predictor import Predictor, check_tiling, class_id_image, place

__all__ = ["ModelCache", "Prediction", "predict_image", "compare_images", "parse_tile", "build_app", "launch"]

CACHED_MODELS = 4  # loaded weights kept, least recently used dropped
DISAGREE_COLOUR = np.array([255, 0, 64], dtype=np.uint8)


class ModelCache:
    """Weights by name, loaded once (anything ``segzoo predict`` takes), with their predictor."""

    def __init__(self, device: str = "cpu", size: int = CACHED_MODELS) -> None:
        self.device, self.size = device, size
        self._loaded: OrderedDict[str, Predictor] = OrderedDict()

    def get(self, weights: str | None) -> Predictor:
        name = (weights or "").strip()
        if not name:
            raise InvalidValueError("pick weights first: a zoo name or tag, a file or folder, an .onnx, .pt2 or "
                                    "OpenVINO .xml file, or hf-hub:org/name")
        if name not in self._loaded:
            model, transform = load(name), eval_transform(name)
            self._loaded[name] = Predictor(place(model, self.device), transform)
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(name)
        return self._loaded[name]


def parse_tile(text: str | int | None) -> int | str | None:
    """The tile option as the command line reads it: a number of pixels, ``auto`` or ``none``."""
    value = str(text if text is not None else "auto").strip().lower()
    if value in ("auto", "none", ""):
        return None if value == "none" else "auto"
    try:
        return int(value)
    except ValueError:
        raise InvalidValueError(f"tile takes a number of pixels, 'auto' or 'none', got {text!r}") from None


def as_rgb(image: Any) -> np.ndarray:
    """An uploaded image as RGB uint8 (H, W, 3), bounded as the command line bounds files."""
    if image is None:
        raise InvalidValueError("upload an image first")
    if not isinstance(image, np.ndarray):
        raise InvalidTypeError(f"expected an image array, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4) or min(image.shape[:2]) < 1:
        raise InvalidValueError(f"expected an RGB image (H, W, 3), got shape {tuple(image.shape)}")
    limit = max_image_pixels()
    if image.shape[0] * image.shape[1] > limit:
        raise InvalidValueError(f"the image is {image.shape[1]}x{image.shape[0]}, above the limit of "
                                f"{limit / 1e6:.0f} megapixels (${PIXELS_ENV})")
    if image.dtype != np.uint8:
        raise InvalidValueError(f"expected 8-bit pixels, got {image.dtype}")
    return np.ascontiguousarray(image[..., :3])


@dataclass
class Prediction:
    ids: np.ndarray  # class ids (H, W)
    overlay: np.ndarray  # colours over the image, with a legend
    mask: np.ndarray  # the class colours alone (H, W, 3)
    table: list[list[Any]]  # [class, share of the image (%), pixels] for each class present, largest first
    ms: float  # wall time of the prediction


def _table(ids: np.ndarray, names: list[str]) -> list[list[Any]]:
    counts = np.bincount(ids.ravel(), minlength=len(names))
    order = np.argsort(-counts, kind="stable")
    return [[names[i], round(100.0 * counts[i] / ids.size, 2), int(counts[i])] for i in order if counts[i]]


def predict_image(models: ModelCache, weights: str, image: Any, tile: Any = "auto", overlap: float = 0.25,
                  tta: list[str] | tuple[str, ...] = ()) -> Prediction:
    """One image through ``weights``, as ``segzoo predict`` would do it."""
    image = as_rgb(image)
    tiling = {"tile": parse_tile(tile), "overlap": overlap, "tta": list(tta or ())}
    check_tiling(tiling)
    predictor = models.get(weights)
    start = time.perf_counter()
    ids = predictor.class_ids(image, **tiling)
    ms = (time.perf_counter() - start) * 1000
    return Prediction(ids, predictor.overlay(image, ids), predictor.colours[ids], _table(ids, predictor.names), ms)


def compare_images(models: ModelCache, weights_a: str, weights_b: str, image: Any, tile: Any = "auto",
                   overlap: float = 0.25, tta: list[str] | tuple[str, ...] = ()
                   ) -> tuple[Prediction, Prediction, np.ndarray, float]:
    """Both predictions, a map of the pixels where they disagree (red over the dimmed image) and their
    agreement (share of pixels with the same class id)."""
    image = as_rgb(image)
    a = predict_image(models, weights_a, image, tile, overlap, tta)
    b = predict_image(models, weights_b, image, tile, overlap, tta)
    differ = a.ids != b.ids
    disagreement = (image // 3 + 40).astype(np.uint8)
    disagreement[differ] = DISAGREE_COLOUR
    return a, b, disagreement, 100.0 * (1.0 - float(differ.mean()))


class App:
    """The page's handlers: each turns a segzoo error into the one-line message the page shows."""

    def __init__(self, models: ModelCache, workdir: Path) -> None:
        self.models, self.workdir = models, workdir

    def _save(self, ids: np.ndarray, overlay: np.ndarray, num_classes: int) -> tuple[str, str]:
        from PIL import Image

        stem = self.workdir / uuid.uuid4().hex[:12]
        ids_path, overlay_path = stem.with_name(stem.name + "_mask.png"), stem.with_name(stem.name + "_overlay.png")
        class_id_image(ids, num_classes).save(ids_path, format="PNG")
        Image.fromarray(overlay).save(overlay_path, format="PNG")
        return str(ids_path), str(overlay_path)

    def predict(self, image, weights, tile="auto", overlap=0.25, tta=None):
        import gradio as gr

        try:
            result = predict_image(self.models, weights, image, tile, overlap, tta or ())
            ids_path, overlay_path = self._save(result.ids, result.overlay, self.models.get(weights).model.num_classes)
        except SegzooError as exc:
            raise gr.Error(str(exc)) from None
        return (result.overlay, result.mask, result.table, f"{result.ms:.0f} ms", [ids_path, overlay_path],
                ids_path)

    def predict_many(self, files, weights, tile="auto", overlap=0.25, tta=None):
        """Several uploaded image files: a gallery of overlays (captioned with each file's time) and every PNG."""
        import gradio as gr

        from segzoo.data.masks import read_image

        try:
            if not files:
                raise InvalidValueError("upload one or more image files first")
            gallery, downloads = [], []
            for file in files:
                path = Path(getattr(file, "name", file))
                result = predict_image(self.models, weights, read_image(path), tile, overlap, tta or ())
                ids_path, overlay_path = self._save(result.ids, result.overlay,
                                                    self.models.get(weights).model.num_classes)
                gallery.append((overlay_path, f"{path.name}: {result.ms:.0f} ms"))
                downloads += [ids_path, overlay_path]
        except SegzooError as exc:
            raise gr.Error(str(exc)) from None
        return gallery, downloads

    def compare(self, image, weights_a, weights_b, tile="auto", overlap=0.25, tta=None):
        import gradio as gr

        try:
            a, b, disagreement, agreement = compare_images(self.models, weights_a, weights_b, image, tile, overlap,
                                                           tta or ())
        except SegzooError as exc:
            raise gr.Error(str(exc)) from None
        summary = (f"agreement {agreement:.2f}% of pixels; {weights_a}: {a.ms:.0f} ms, {weights_b}: {b.ms:.0f} ms "
                   f"({a.ms / max(b.ms, 1e-9):.2f}x)")
        return a.overlay, b.overlay, disagreement, summary


def build_app(weights: list[str] | None = None, device: str = "cpu", workdir: str | Path | None = None):
    """The Gradio page: a Predict view (one image, or several) and a Compare view; ``weights`` are loaded now and
    offered first."""
    from segzoo.core.registry import MODELS
    from segzoo.storage.manifest import read_manifest

    workdir = Path(workdir or tempfile.mkdtemp(prefix="segzoo-app-"))
    workdir.mkdir(parents=True, exist_ok=True)
    models = ModelCache(device)
    for name in weights or []:
        models.get(name)
    zoo = [f"{e['model']}.{e['tag']}" for e in read_manifest()]
    declared = [f"{e.name}.{tag}" for e in MODELS.registered() for tag in (e.metadata.get("weights") or {})]
    choices = list(dict.fromkeys([*(weights or []), *zoo, *declared]))
    handlers = App(models, workdir)
    import gradio as gr  # imported here, after launch() has set GRADIO_TEMP_DIR

    first, second = (choices + [None, None])[:2]

    def options():
        with gr.Accordion("Tiling and test-time augmentation (as segzoo predict)", open=False):
            tile = gr.Textbox("auto", label="tile (pixels, auto or none)")
            overlap = gr.Slider(0.0, 0.9, value=0.25, step=0.05, label="overlap")
            tta = gr.CheckboxGroup(["hflip", "vflip"], label="test-time flips")
        return tile, overlap, tta

    with gr.Blocks(title="segzoo") as page:
        gr.Markdown("# segzoo\nPick weights, upload an image, see what the model does.")
        with gr.Tab("Predict"):
            with gr.Row():
                with gr.Column():
                    pick = gr.Dropdown(choices, value=first, allow_custom_value=True, label="weights",
                                       elem_id="weights")
                    image = gr.Image(type="numpy", label="image", elem_id="image")
                    tile, overlap, tta = options()
                    run = gr.Button("Predict", variant="primary", elem_id="predict")
                with gr.Column():
                    overlay = gr.Image(label="overlay", format="png", elem_id="overlay")
                    mask = gr.Image(label="class colours", format="png", elem_id="mask")
                    elapsed = gr.Textbox(label="prediction time", elem_id="elapsed")
                    table = gr.Dataframe(headers=["class", "share of the image (%)", "pixels"], label="classes",
                                         elem_id="table")
                    files = gr.Files(label="downloads (class-id PNG, overlay PNG)", elem_id="downloads")
                    ids_file = gr.File(visible=False)
            run.click(handlers.predict, [image, pick, tile, overlap, tta],
                      [overlay, mask, table, elapsed, files, ids_file], api_name="predict")
            with gr.Accordion("Several images at once", open=False):
                many = gr.File(file_count="multiple", file_types=["image"], label="images", elem_id="images")
                run_many = gr.Button("Predict all", elem_id="predict-all")
                gallery = gr.Gallery(label="overlays", format="png", elem_id="gallery")
                many_files = gr.Files(label="downloads (a class-id PNG and an overlay each)")
            run_many.click(handlers.predict_many, [many, pick, tile, overlap, tta], [gallery, many_files],
                           api_name="predict_many")
        with gr.Tab("Compare"):
            with gr.Row():
                pick_a = gr.Dropdown(choices, value=first, allow_custom_value=True, label="weights A",
                                     elem_id="weights-a")
                pick_b = gr.Dropdown(choices, value=second, allow_custom_value=True, label="weights B",
                                     elem_id="weights-b")
            image_c = gr.Image(type="numpy", label="image", elem_id="image-compare")
            tile_c, overlap_c, tta_c = options()
            go = gr.Button("Compare", variant="primary", elem_id="compare")
            with gr.Row():
                overlay_a = gr.Image(label="A", format="png", elem_id="overlay-a")
                overlay_b = gr.Image(label="B", format="png", elem_id="overlay-b")
                differ = gr.Image(label="where they disagree (red)", format="png", elem_id="disagreement")
            summary = gr.Textbox(label="agreement and times", elem_id="summary")
            go.click(handlers.compare, [image_c, pick_a, pick_b, tile_c, overlap_c, tta_c],
                     [overlay_a, overlay_b, differ, summary], api_name="compare")
    page.segzoo_workdir = workdir
    return page


def launch(weights: list[str] | None = None, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           device: str = "cpu", block: bool = True):
    """Start the app; every file it writes goes to one temporary folder, removed when it stops (``block``)."""
    import os

    workdir = Path(tempfile.mkdtemp(prefix="segzoo-app-"))
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")  # before Gradio is imported: its uploads go here
    page = build_app(weights, device, workdir)
    try:
        page.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, show_error=True,
                    allowed_paths=[str(workdir)])
    finally:
        if block:
            shutil.rmtree(workdir, ignore_errors=True)
    return page
