"""``segzoo app``: the handlers (same ids as segzoo predict, one-line errors), its API through gradio_client, and
both views driven in a real headless Chromium, whose screenshots are the ones in the README."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo
from conftest import REPO, shared_data_dir
from segzoo.cli import main
from segzoo.core.errors import InvalidValueError, SegzooError
from segzoo.data.synthetic import write_shapes_dataset
from segzoo.training.recipe import Recipe
from segzoo.training.trainer import Trainer

gr = pytest.importorskip("gradio", reason="the app extra (Gradio) is not installed")
from segzoo.cli.app import ModelCache, build_app, compare_images, predict_image  # noqa: E402

TINY = {"decoder": "unet", "encoder": "plain",
        "overrides": {"encoder_params": {"widths": [8, 16, 16]}, "decoder_channels": [8, 8], "upsampling": "bilinear"}}
SCREENSHOTS = REPO / "docs" / "images"  # written only when SEGZOO_APP_SCREENSHOTS=1


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny trained model (a folder) and its INT8 ONNX file."""
    root = tmp_path_factory.mktemp("app")
    data = write_shapes_dataset(root / "shapes", n_images=16, size=48, seed=11)
    recipe = {"model": TINY, "data": {"root": str(data), "classes": ["background", "disc", "square", "triangle"],
                                      "val_fraction": 0.25},
              "augment": {"crop_size": 48}, "train": {"epochs": 2, "batch_size": 4, "progress": False,
                                                      "plots": False}}
    Trainer(Recipe.from_dict(recipe), root / "run").fit()
    model = segzoo.from_pretrained(root / "run" / "best")
    images = torch.from_numpy(np.stack([np.array(Image.open(p)) for p in sorted((data / "images").iterdir())[:8]]))
    with warnings.catch_warnings():  # "INT8 is not faster here" on so small a model: the file is what is tested
        warnings.simplefilter("ignore", RuntimeWarning)
        segzoo.quantize(model, images.permute(0, 3, 1, 2), example_size=(48, 48)).save(root / "int8.onnx")
    return root / "run" / "best", root / "int8.onnx"


def _screenshots() -> bool:
    """SEGZOO_APP_SCREENSHOTS=1: the browser test shows the zoo's CamVid weights on a whole CamVid image and
    writes its screenshots into docs/images (how the README's pictures are made)."""
    return os.environ.get("SEGZOO_APP_SCREENSHOTS") == "1"


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A real CamVid image where the data is present (cropped small, for speed), else a synthetic one."""
    out = tmp_path_factory.mktemp("photo") / "photo.png"
    source = next(iter(sorted((shared_data_dir() / "camvid" / "val").glob("*.png"))), None)
    if source is not None:
        image = Image.open(source).convert("RGB")
        (image if _screenshots() else image.crop((120, 120, 280, 240))).save(out)
    else:
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(out)
    return out


def _predicted_ids(weights: Path, photo: Path, out: Path) -> np.ndarray:
    assert main(["predict", str(photo), "-w", str(weights), "-o", str(out), "--quiet"]) == 0
    return np.array(Image.open(out / f"{photo.stem}.png"))


def test_handlers_give_segzoo_predicts_ids_and_one_line_errors(weights, photo, tmp_path):
    model_dir, int8 = weights
    models = ModelCache()
    image = np.array(Image.open(photo))
    result = predict_image(models, str(model_dir), image)
    assert np.array_equal(result.ids, _predicted_ids(model_dir, photo, tmp_path / "cli"))
    assert result.overlay.shape[2] == 3 and result.mask.shape == image.shape
    assert abs(sum(row[1] for row in result.table) - 100.0) < 0.1 and result.ms > 0
    a, b, disagreement, agreement = compare_images(models, str(model_dir), str(int8), image)
    assert np.array_equal(b.ids, _predicted_ids(int8, photo, tmp_path / "int8"))
    assert agreement == pytest.approx(100.0 * float((a.ids == b.ids).mean()))
    assert disagreement.shape == image.shape
    for bad, match in [((str(model_dir), None), "upload an image"), (("", image), "pick weights"),
                       ((str(tmp_path / "nope"), image), "nope"), ((str(model_dir), image[..., :2]), "RGB")]:
        with pytest.raises(SegzooError, match=match):
            predict_image(models, *bad)
    with pytest.raises(InvalidValueError, match="tile takes a number"):
        predict_image(models, str(model_dir), image, tile="big")
    with pytest.raises(InvalidValueError, match="tile must be an integer of at least 16"):
        predict_image(models, str(model_dir), image, tile="8")
    with pytest.raises(InvalidValueError, match="overlap must be a number"):  # the API passes what it is given
        predict_image(models, str(model_dir), image, tile="32", overlap="half")


@pytest.fixture
def served(weights, tmp_path):
    """The app on a free loopback port, with two weights preloaded: the tiny model and its INT8 file (the zoo's
    CamVid MobileNetV2 and Lite2 weights when making screenshots)."""
    names = ["deeplabv3plus_mnv2.camvid", "unet_lite2.camvid"] if _screenshots() else [str(w) for w in weights]
    page = build_app(names, workdir=tmp_path / "work")
    page.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True, show_error=True,
                allowed_paths=[str(tmp_path / "work")])
    try:
        yield names, page.local_url
    finally:
        page.close()


def test_api_endpoint_predict_returns_overlay_mask_and_table(served, photo, tmp_path):
    from gradio_client import Client, handle_file

    (model_dir, _), url = served
    client = Client(url, verbose=False)
    overlay, mask, table, elapsed, files, ids_file = client.predict(handle_file(str(photo)), str(model_dir),
                                                                    api_name="/predict")
    ids = np.array(Image.open(ids_file))
    assert np.array_equal(ids, _predicted_ids(model_dir, photo, tmp_path / "cli"))
    assert [row[0] for row in table["data"]] and elapsed.endswith("ms") and len(files) == 2
    with pytest.raises(Exception, match="pick weights first"):
        client.predict(handle_file(str(photo)), "", api_name="/predict")
    # several images at once: an overlay each in the gallery, a class-id PNG and an overlay each to download
    second = tmp_path / "second.png"
    Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(second)
    gallery, downloads = client.predict([handle_file(str(photo)), handle_file(str(second))], str(model_dir),
                                        api_name="/predict_many")
    assert len(gallery) == 2 and len(downloads) == 4
    assert gallery[0]["caption"].startswith("photo.png: ") and gallery[1]["caption"].startswith("second.png: ")
    flipped = np.array(Image.open(next(d for d in downloads if d.endswith("_mask.png") and d != downloads[0])))
    assert np.array_equal(flipped, _predicted_ids(model_dir, second, tmp_path / "cli2"))


def _browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                    "chromium-driver); .ci/run installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1600"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def _image_src(browser, elem_id: str, timeout: float = 120) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(b):
        images = b.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
        return images[0].get_attribute("src") if images and images[0].get_attribute("src") else False

    return WebDriverWait(browser, timeout).until(found)


def _element(browser, css: str, timeout: float = 60):
    """The first element matching ``css``, once the page's scripts have rendered it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(lambda b: (b.find_elements(By.CSS_SELECTOR, css) or [False])[0])


def _fetch(browser, src: str) -> np.ndarray:
    import io
    import urllib.request

    if src.startswith("data:"):
        import base64

        data = base64.b64decode(src.split(",", 1)[1])
    else:
        data = urllib.request.urlopen(src, timeout=30).read()  # the app's own loopback address
    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


def _screenshot(browser, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.png"
    browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    if os.environ.get("SEGZOO_APP_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"app-{name}.png")


def test_both_views_in_a_real_browser(served, photo, tmp_path):
    """Upload a CamVid image, predict with the preloaded weights, check the class colours shown against segzoo
    predict's ids; then compare the model with its INT8 file."""
    from selenium.webdriver.common.by import By

    (model_dir, _), url = served
    expected = _predicted_ids(model_dir, photo, tmp_path / "cli")
    predictor = ModelCache().get(str(model_dir))
    browser = _browser()
    try:
        browser.get(url)
        _element(browser, "#image input[type=file]").send_keys(str(photo))
        _element(browser, "#image img")  # the upload is shown
        _element(browser, "#predict").click()
        shown = _fetch(browser, _image_src(browser, "mask"))
        assert np.array_equal(shown, predictor.colours[expected])  # the colours of segzoo predict's class ids
        _screenshot(browser, "predict", tmp_path)
        browser.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Compare')]").click()
        _element(browser, "#image-compare input[type=file]").send_keys(str(photo))
        _element(browser, "#image-compare img")
        _element(browser, "#compare").click()
        disagreement = _fetch(browser, _image_src(browser, "disagreement"))
        assert disagreement.shape[:2] == expected.shape
        summary = browser.find_element(By.CSS_SELECTOR, "#summary textarea").get_attribute("value")
        assert "agreement" in summary and "ms" in summary
        _screenshot(browser, "compare", tmp_path)
    finally:
        browser.quit()
