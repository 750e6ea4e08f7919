"""Data: pair discovery, mask decoding, joint transforms, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_data_dir
from segzoo.data import (
    DataConfig,
    MaskDecoder,
    SegmentationDataset,
    build_pairs,
    eval_preset,
    folder_pairs,
    list_file_pairs,
    pad_collate,
    train_preset,
)
from segzoo.data.transforms import from_dict, to_dict


def _write(root: Path, name: str, image: np.ndarray, mask: np.ndarray, img_ext=".jpg") -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{name}{img_ext}")
    Image.fromarray(mask).save(root / "masks" / f"{name}.png")


def test_folder_pairs_match_by_stem_and_list_unmatched(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    for name in ("a", "b"):
        _write(tmp_path, name, img, mask)
    pairs = folder_pairs(tmp_path)
    assert [(p.name, m.name) for p, m in pairs] == [("a.jpg", "a.png"), ("b.jpg", "b.png")]
    Image.fromarray(img).save(tmp_path / "images" / "lonely.jpg")
    Image.fromarray(mask).save(tmp_path / "masks" / "orphan.png")
    with pytest.raises(ValueError, match=r"lonely\.jpg.*orphan\.png"):
        folder_pairs(tmp_path)


def test_nested_tiles_with_same_names(tmp_path):
    img, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    for tile in ("Tile 1", "Tile 2"):
        _write(tmp_path / tile, "part_001", img, mask)
    pairs = folder_pairs(tmp_path)
    assert len(pairs) == 2 and {p.parent.parent.name for p, _ in pairs} == {"Tile 1", "Tile 2"}


def test_list_file_with_stale_absolute_prefix(tmp_path):
    img, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    (tmp_path / "train").mkdir()
    (tmp_path / "trainannot").mkdir()
    Image.fromarray(img).save(tmp_path / "train" / "x.png")
    Image.fromarray(mask).save(tmp_path / "trainannot" / "x.png")
    (tmp_path / "train.txt").write_text("/SegNet/CamVid/train/x.png /SegNet/CamVid/trainannot/x.png\n")
    assert list_file_pairs(tmp_path, "train.txt") == [(tmp_path / "train" / "x.png", tmp_path / "trainannot" / "x.png")]
    (tmp_path / "bad.txt").write_text("/SegNet/CamVid/train/missing.png /SegNet/CamVid/trainannot/x.png\n")
    with pytest.raises(FileNotFoundError, match=r"bad.txt:1: '/SegNet/CamVid/train/missing.png'"):
        list_file_pairs(tmp_path, "bad.txt")


def test_palette_masks_with_different_index_orders_decode_the_same(tmp_path):
    ids = np.array([[0, 1], [2, 1]], np.uint8)
    colours = {(60, 16, 152): 0, (132, 41, 246): 1, (110, 193, 228): 2}
    rgb_of = {v: k for k, v in colours.items()}
    for name, order in (("p1", [0, 1, 2]), ("p2", [2, 0, 1])):
        palette_img = Image.fromarray(np.vectorize(order.index)(ids).astype(np.uint8), mode="P")
        flat = [c for idx in range(3) for c in rgb_of[order[idx]]]
        palette_img.putpalette(flat + [0] * (768 - len(flat)))
        palette_img.save(tmp_path / f"{name}.png")
    decoder = MaskDecoder(3, colours=colours)
    assert np.array_equal(decoder(tmp_path / "p1.png"), ids)
    assert np.array_equal(decoder(tmp_path / "p2.png"), ids)


def test_unknown_colour_names_file_and_colour(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"m\.png.*\(1, 2, 3\).*colour table"):
        MaskDecoder(2, colours={(0, 0, 0): 0})(tmp_path / "m.png")


def test_mask_values_outside_classes(tmp_path):
    Image.fromarray(np.array([[0, 7], [255, 1]], np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"m\.png.*\[7\].*ignore index 255"):
        MaskDecoder(3)(tmp_path / "m.png")
    assert MaskDecoder(8)(tmp_path / "m.png").tolist() == [[0, 7], [255, 1]]
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(tmp_path / "b.png")
    assert MaskDecoder(2, values={0: 0, 255: 1})(tmp_path / "b.png").tolist() == [[0, 1]]
    with pytest.raises(ValueError, match=r"\[255\].*value map"):
        MaskDecoder(2, values={0: 0})(tmp_path / "b.png")


def test_bad_files_are_named(tmp_path):
    _write(tmp_path, "a", np.zeros((8, 8, 3), np.uint8), np.zeros((6, 8), np.uint8))
    ds = SegmentationDataset(folder_pairs(tmp_path), MaskDecoder(2), eval_preset())
    with pytest.raises(ValueError, match=r"a\.jpg' is 8x8 but its mask .*a\.png' is 8x6"):
        ds[0]
    (tmp_path / "images" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image .*a\.jpg"):
        ds[0]
    with pytest.raises(ValueError, match="empty"):
        SegmentationDataset([], MaskDecoder(2), eval_preset())


def test_masks_resampled_nearest_and_aligned_with_image():
    """The image encodes the mask, so any misalignment or interpolation of the mask shows."""
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 4, (8, 10)).repeat(12, 0).repeat(12, 1).astype(np.uint8)  # 96 x 120, 12-pixel blocks
    image = np.stack([mask * 60] * 3, -1).astype(np.uint8)
    t = train_preset(96, scale=(0.5, 2.0), colour_jitter=0.0, ignore_index=255)
    t.set_random_seed(3)
    out = t(image=image, mask=mask)
    m = out["mask"].numpy() if hasattr(out["mask"], "numpy") else np.asarray(out["mask"])
    assert set(np.unique(m)) <= {0, 1, 2, 3, 255}  # nearest: no invented values
    assert out["image"].dtype == torch.uint8  # normalisation happens batched, on the device
    decoded = np.rint(out["image"][0].numpy() / 60)
    # region interiors (5x5 neighbourhood of one class): the image there must carry the same class
    pad = np.pad(m.astype(np.int64), 2, constant_values=-1)
    windows = np.lib.stride_tricks.sliding_window_view(pad, (5, 5))
    interior = (windows == m[..., None, None]).all(axis=(-1, -2)) & (m != 255)
    assert interior.sum() > 500
    assert (decoded[interior] == m[interior]).all()


def test_transforms_serialise_and_reproduce():
    t = train_preset(32, colour_jitter=0.3)
    again = from_dict(to_dict(t))
    image = np.random.default_rng(1).integers(0, 255, (50, 60, 3), dtype=np.uint8)
    mask = np.zeros((50, 60), np.uint8)
    t.set_random_seed(7)
    again.set_random_seed(7)
    a, b = t(image=image, mask=mask), again(image=image, mask=mask)
    assert torch.equal(a["image"], b["image"])


def test_pad_collate_pads_masks_with_ignore():
    batch = [(torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.long)),
             (torch.ones(3, 6, 3), torch.ones(6, 3, dtype=torch.long))]
    images, masks = pad_collate(batch, ignore_index=9)
    assert images.shape == (2, 3, 6, 5) and masks.shape == (2, 6, 5)
    assert masks[0, 5, 0] == 9 and masks[1, 0, 4] == 9 and images[0, :, 5, 0].eq(0).all()


def test_split_is_stable_and_disjoint(tmp_path):
    img, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    for i in range(20):
        _write(tmp_path, f"s{i:02d}", img, mask)
    cfg = DataConfig(root=str(tmp_path), classes=["a", "b"], val_fraction=0.2)
    train, val = build_pairs(cfg, "train"), build_pairs(cfg, "val")
    assert len(val) == 4 and len(train) == 16 and not set(train) & set(val)
    assert build_pairs(cfg, "val") == val


@pytest.mark.parametrize("name", ["camvid", "aerial", "nuclei"])
def test_real_datasets_decode(name):
    root = shared_data_dir() / name
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set SEGZOO_DATA)")
    from segzoo.training.recipe import Recipe

    recipe = Recipe.load(name, ["data.limit=3"])
    recipe.data.root = str(root)
    ds = SegmentationDataset(build_pairs(recipe.data, "train"), recipe.data.decoder(), eval_preset())
    for i in range(len(ds)):
        image, mask = ds[i]
        assert image.shape[-2:] == mask.shape
        values = set(mask.unique().tolist())
        assert values <= set(range(recipe.data.num_classes)) | {recipe.data.ignore_index}


def test_random_scale_crop_geometry():
    from segzoo.data.transforms import RandomScaleCrop, _random_scale_crop_class

    cls = _random_scale_crop_class()
    small = np.full((20, 30, 3), 200, np.uint8)
    mask = np.ones((20, 30), np.uint8)
    t = cls(64, 64, scale=(1.0, 1.0), fill_mask=255)  # no scaling: the image sits top-left, the rest is padding
    out = t(image=small, mask=mask)
    assert out["image"].shape == (64, 64, 3) and out["mask"].shape == (64, 64)
    assert (out["mask"][:20, :30] == 1).all() and (out["mask"][20:] == 255).all() and (out["mask"][:, 30:] == 255).all()
    assert (out["image"][20:] == 0).all()
    big = np.zeros((100, 100), np.uint8)
    big[:, 50:] = 3
    t = cls(40, 40, scale=(2.0, 2.0))
    t.set_random_seed(0)
    out = t(image=np.stack([big] * 3, -1), mask=big)
    assert set(np.unique(out["mask"])) <= {0, 3}  # nearest: no blended labels
    assert RandomScaleCrop is cls


def test_normalize_matches_formula():
    from segzoo.core.config import Preprocessing
    from segzoo.data import normalize

    pre = Preprocessing(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5), input_range=(-1.0, 1.0))
    x = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1).double() for v in (pre.mean, pre.std))
    expected = (x.double() / 255 * 2 - 1 - mean) / std
    torch.testing.assert_close(normalize(x, pre).double(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="uint8"):
        normalize(x.float(), pre)
    with pytest.raises(ValueError, match="channel"):
        normalize(x[:, :2], pre)


def test_too_many_classes_for_uint8_masks():
    with pytest.raises(ValueError, match="1..255 classes"):
        MaskDecoder(300)


def test_quarter_turns_move_image_and_mask_together():
    """rotate90 (overhead imagery): every turn is seen, and the image still encodes the mask after it."""
    mask = np.zeros((64, 64), np.uint8)
    mask[:16, :32] = 1  # an asymmetric block: each quarter turn puts it somewhere else
    image = np.stack([mask * 200] * 3, -1).astype(np.uint8)
    t = train_preset(64, scale=(1.0, 1.0), hflip=False, colour_jitter=0.0, rotate90=True)
    seen = set()
    for seed in range(24):
        t.set_random_seed(seed)
        out = t(image=image, mask=mask)
        m = np.asarray(out["mask"])
        assert (out["image"][0].numpy() == m * 200).all()
        seen.add(m.tobytes())
    assert len(seen) == 4
    with pytest.raises(ValueError, match="rotate90 needs a square crop, got crop_size 64x48"):
        train_preset((64, 48), rotate90=True)


def test_focus_crops_land_on_rare_classes_and_keep_image_and_mask_aligned():
    """focus_p=1: every crop holds a pixel of a focus class present in the mask; uniform crops mostly miss it."""
    mask = np.zeros((400, 400), np.uint8)
    mask[300:304, 40:44] = 2  # a 4x4 patch of class 2: 0.01% of the pixels
    mask[10:12, 380:382] = 3  # class 3 is present but not a focus class
    image = np.stack([mask * 60] * 3, -1).astype(np.uint8)
    hits = {}
    for scale in ((0.75, 1.25), (1.0, 1.0)):  # at scale 1 the image is not resampled: it must equal the mask
        focused = train_preset(48, scale=scale, hflip=False, colour_jitter=0.0, focus_classes=(2, 5), focus_p=1.0)
        uniform = train_preset(48, scale=scale, hflip=False, colour_jitter=0.0)
        for seed in range(40):
            for name, t in (("focused", focused), ("uniform", uniform)):
                t.set_random_seed(seed)
                out = t(image=image, mask=mask)
                m = np.asarray(out["mask"])
                assert m.shape == (48, 48)
                hits[name, scale] = hits.get((name, scale), 0) + int((m == 2).any())
                if scale == (1.0, 1.0):
                    assert (out["image"][0].numpy() == m * 60).all()
        assert hits["focused", scale] == 40
        assert hits["uniform", scale] < 10
    # a mask without any focus class gets uniform crops (no error); the same seed gives the same crop
    plain = np.zeros((100, 100), np.uint8)
    focused.set_random_seed(1)
    a = np.asarray(focused(image=np.stack([plain] * 3, -1), mask=plain)["mask"])
    assert a.shape == (48, 48) and set(np.unique(a)) == {0}
    focused.set_random_seed(4)
    b = focused(image=image, mask=mask)
    again = from_dict(to_dict(focused))  # focus settings survive serialisation
    again.set_random_seed(4)
    assert np.array_equal(np.asarray(again(image=image, mask=mask)["mask"]), np.asarray(b["mask"]))


def test_focus_crops_bad_settings_are_named():
    with pytest.raises(ValueError, match="focus_p 0.5 needs focus_classes"):
        train_preset(32, focus_p=0.5)
    with pytest.raises(ValueError, match=r"focus_p must be in \[0, 1\], got 1.5"):
        train_preset(32, focus_classes=(1,), focus_p=1.5)
    from segzoo.training.recipe import AugmentConfig

    aug = AugmentConfig(focus_classes=["road", "pole"], focus_p=0.5)
    with pytest.raises(ValueError, match=r"augment.focus_classes names \['pole'\].*\['road', 'sky'\]"):
        aug.train_transform(255, ["road", "sky"])
    crop = AugmentConfig(focus_classes=["sky"], focus_p=0.5).train_transform(255, ["road", "sky"]).transforms[0]
    assert crop.focus_classes == (1,) and crop.focus_p == 0.5
