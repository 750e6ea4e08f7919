"""Sliding-window and test-time-augmented prediction: coverage, blending, batching, flips and scales."""

from __future__ import annotations

import pytest
import torch

import segzoo
from segzoo.core.errors import InvalidValueError
from segzoo.inference.tiling import predict_probs, sliding_window, window_starts, window_weight


class Pointwise(torch.nn.Module):
    """A 1x1 convolution: its output at a pixel depends on that pixel only, so any tiling must agree."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, classes, 1)
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return self.conv(x)


@pytest.mark.parametrize("size,tile,stride", [(100, 32, 24), (32, 32, 24), (20, 32, 24), (97, 40, 20)])
def test_windows_cover_every_pixel_and_end_at_the_edge(size, tile, stride):
    starts = window_starts(size, tile, stride)
    covered = torch.zeros(size, dtype=torch.bool)
    for s in starts:
        covered[s:s + tile] = True
    assert covered.all() and starts[0] == 0 and starts[-1] + min(tile, size) == size
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


def test_weight_is_smooth_positive_and_peaks_in_the_centre():
    w = window_weight(32, 48)
    assert w.shape == (32, 48) and float(w.min()) > 0.0 and float(w.max()) <= 1.0
    assert float(w[16, 24]) > 0.9 > float(w[0, 0])


@pytest.mark.parametrize("tile,overlap,batch", [(32, 0.25, 4), (40, 0.5, 3), (64, 0.0, 1)])
def test_tiled_equals_whole_image_for_a_pointwise_model(tile, overlap, batch):
    model, image = Pointwise(), torch.randn(1, 3, 97, 131)
    whole = torch.softmax(model(image), 1)
    model.calls.clear()
    tiled = sliding_window(model, image, tile, overlap, batch)
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-6)
    assert max(model.calls) <= batch  # windows go in batches of at most `batch`


def test_flips_and_scales_are_undone_before_averaging():
    model, image = Pointwise(2), torch.randn(2, 3, 40, 56)
    plain = predict_probs(model, image)
    torch.testing.assert_close(predict_probs(model, image, tta=("hflip", "vflip")), plain, rtol=1e-5, atol=1e-6)
    # a model that sees its input's x coordinate: hflip averaging makes its output left-right symmetric
    ramp = torch.linspace(-3, 3, 56)

    def positional(x):
        return torch.stack([ramp.expand(x.shape[0], *x.shape[-2:]), torch.zeros(x.shape[0], *x.shape[-2:])], 1)

    sym = predict_probs(positional, image, tta=("hflip",))
    torch.testing.assert_close(sym, sym.flip(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sym, torch.full_like(sym, 0.5), rtol=1e-5, atol=1e-6)
    # rescaled views are resized back to the input: on a smooth image a pointwise model agrees closely
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 40), torch.linspace(-1, 1, 56), indexing="ij")
    smooth = torch.stack([xx, yy, xx * yy])[None]
    scaled = predict_probs(model, smooth, scales=(0.5, 1.0, 1.5))
    torch.testing.assert_close(scaled, predict_probs(model, smooth), rtol=0, atol=0.02)


def test_model_predict_with_tiles_and_tta():
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=3).eval()
    images = torch.randint(0, 255, (1, 3, 70, 90), dtype=torch.uint8)
    plain = model.predict(images)
    assert torch.equal(model.predict(images, tile=128), plain)  # the image fits one tile: nothing changes
    tiled = model.predict(images, tile=32, overlap=0.5, tta=("hflip",), scales=(1.0, 1.25))
    assert tiled.shape == plain.shape == (1, 70, 90) and int(tiled.max()) < 3


@pytest.mark.parametrize("kwargs,culprit", [
    ({"tile": 8}, "tile"), ({"overlap": 1.0}, "overlap"), ({"tta": ("rotate90",)}, "rotate90"),
    ({"scales": (0,)}, "scales"), ({"batch": 0}, "batch"),
])
def test_bad_options_are_named(kwargs, culprit):
    with pytest.raises(InvalidValueError, match=culprit):
        predict_probs(Pointwise(), torch.randn(1, 3, 8, 8), **kwargs)


def test_predict_cli_tiles_and_averages_views(tmp_path):
    import numpy as np
    from PIL import Image

    from segzoo.cli import main
    from segzoo.storage.format import write_weights

    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=3).eval()
    weights = write_weights(model, tmp_path / "m.safetensors")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "-w", str(weights), "-o", str(tmp_path / "plain")]) == 0
    assert main(["predict", str(tmp_path / "a.png"), "-w", str(weights), "-o", str(tmp_path / "tiled"),
                 "--tile", "48", "--overlap", "0.5", "--tta", "hflip", "--scales", "1.0", "0.75"]) == 0
    plain = np.array(Image.open(tmp_path / "plain" / "a.png"))
    tiled = np.array(Image.open(tmp_path / "tiled" / "a.png"))
    assert plain.shape == tiled.shape == (90, 120) and tiled.max() < 3
    expected = model.predict(np.array(Image.open(tmp_path / "a.png")), tile=48, overlap=0.5, tta=("hflip",),
                             scales=(1.0, 0.75)).numpy()
    assert (tiled == expected).mean() > 0.99  # the file path and model.predict agree (the fast path folds BN)


def test_models_with_auxiliary_heads_predict_from_their_main_logits():
    model = segzoo.create("deeplabv3_r50", encoder="test_resnet", num_classes=3, aux_head=True).eval()
    image = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        expected = torch.softmax(model.forward_heads(image).logits, 1)
    torch.testing.assert_close(predict_probs(model, image, tile=1024), expected)


def test_cli_tiles_large_images_by_default():
    from segzoo.cli.commands.predict import _tile
    from segzoo.inference.predictor import AUTO_TILE, auto_tile

    assert auto_tile((1024, 1024)) is None and auto_tile((360, 480)) is None
    assert auto_tile((1817, 2061)) == AUTO_TILE == 512
    assert _tile("auto") == "auto" and _tile("none") is None and _tile("384") == 384
    with pytest.raises(Exception, match="'auto' or 'none', got 'big'"):
        _tile("big")


@pytest.mark.parametrize("size", [(50, 130), (20, 30), (40, 60)])
def test_fixed_windows_give_the_model_only_its_size_and_agree_with_a_whole_pass(size):
    """A model that takes only 40x60 inputs (a static export) predicts any image through windows of exactly that
    size, smaller images padded; for a pointwise model the blend equals the whole-image probabilities."""
    model = Pointwise()
    seen: list[tuple[int, int]] = []

    def fixed(x):
        seen.append(tuple(x.shape[-2:]))
        return model(x)

    image = torch.randn(2, 3, *size)
    probs = predict_probs(fixed, image, window=(40, 60), tta=("hflip",))
    assert set(seen) == {(40, 60)} and probs.shape == (2, 3, *size)
    torch.testing.assert_close(probs, torch.softmax(model(image), 1), atol=1e-5, rtol=1e-5)
    with pytest.raises(InvalidValueError, match=r"tile=32 and window=\(40, 60\) exclude each other"):
        predict_probs(fixed, image, window=(40, 60), tile=32)
