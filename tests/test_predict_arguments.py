"""The Python API's predict arguments (issue 43, class 4): each rule one clear SegzooError, never a raw error
from deep inside, never a silent wrong answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segzoo
from segzoo.core.errors import SegzooError


@pytest.fixture(scope="module")
def model():
    return segzoo.create_model("unet", "plain", 3, encoder_params={"widths": [8, 16]}, decoder_channels=[8]).eval()


IMAGE = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("images,options,match", [
    (IMAGE.astype(np.float32), {}, "like raw 0-255 pixels: pass uint8"),
    (torch.from_numpy(IMAGE).permute(2, 0, 1).float(), {}, "like raw 0-255 pixels"),
    (IMAGE, {"batch": 2.5, "tile": 16}, "batch must be a whole number"),
    (IMAGE, {"tta": "hflip"}, r"tta takes a list.*write \('hflip',\)"),
    (IMAGE, {"scales": 1.0}, "scales takes a list"),
    (IMAGE, {"overlap": "0.5", "tile": 16}, "overlap must be a number"),
    (IMAGE[:0], {}, "no pixels"),
    (np.zeros((2, 3, 4, 5, 3), np.uint8), {}, "predict expects arrays of shape"),
    (IMAGE.astype(np.int32), {}, "uint8 images .* or float images"),
    ("image.png", {}, "a tensor or a numpy array"),
])
def test_bad_predict_arguments_are_one_clear_error(model, images, options, match):
    with pytest.raises(SegzooError, match=match):
        model.predict(images, **options)


def test_what_is_accepted(model):
    """uint8 arrays and tensors, a normalised float batch, and a 2-D array as one single-channel image."""
    ids = model.predict(IMAGE)
    assert ids.shape == (32, 40)
    x = torch.from_numpy(IMAGE).permute(2, 0, 1)
    assert torch.equal(model.predict(x), ids)
    normalised = (x.float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor(
        [0.229, 0.224, 0.225])[:, None, None]
    assert (model.predict(normalised) == ids).float().mean() > 0.99
    gray = segzoo.create_model("unet", "plain", 2, in_channels=1, encoder_params={"widths": [8, 16]},
                               decoder_channels=[8]).eval()
    gray.meta = gray.meta.__class__(preprocessing=gray.meta.preprocessing.__class__((0.5,), (0.25,)))
    assert gray.predict(IMAGE[..., 0]).shape == (32, 40)


def test_a_model_on_the_meta_device_is_named(model):
    with torch.device("meta"):
        empty = segzoo.create_model("unet", "plain", 3, encoder_params={"widths": [8, 16]}, decoder_channels=[8])
    with pytest.raises(SegzooError, match="meta device"):
        empty.eval().predict(IMAGE)


@pytest.mark.parametrize("source", [{}, 5, None, b"model.onnx"])
def test_load_names_a_source_of_the_wrong_type(source):
    from segzoo.api import eval_transform
    from segzoo.core.errors import InvalidTypeError

    for loader in (segzoo.load, eval_transform):
        with pytest.raises(InvalidTypeError, match=f"a source is a path or a name.*got {type(source).__name__}"):
            loader(source)
