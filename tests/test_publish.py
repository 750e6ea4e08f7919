"""Publishing a run as zoo weights: file, card, picture, manifest row, registry specs and the README table."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

import segzoo
from conftest import REPO, TINY_UNET
from segzoo.core.config import EncoderConfig, ModelConfig
from segzoo.core.errors import OutputExistsError
from segzoo.core.registry import MODELS, Registry, RegistryEntry
from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
from segzoo.storage.manifest import (
    README_END,
    README_START,
    check_manifest,
    manifest_specs,
    read_manifest,
    zoo_table,
)
from segzoo.training.publish import CHECK_IMAGES, PublishInfo, evaluate_split, publish
from segzoo.training.recipe import Recipe
from segzoo.training.trainer import Trainer

MODEL = TINY_UNET


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run on synthetic shapes, and its recipe."""
    root = write_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_images=24, size=32, seed=1)
    recipe = Recipe.from_dict({
        "model": MODEL,
        "data": {"root": str(root), "classes": SHAPE_CLASSES, "val_fraction": 0.5,
                 "palette": {c: [40 * i, 255 - 40 * i, 7] for i, c in enumerate(SHAPE_CLASSES)}},
        "augment": {"crop_size": 32},
        "train": {"epochs": 2, "batch_size": 4, "lr": 0.01, "progress": False, "plots": False},
    })
    run = tmp_path_factory.mktemp("run")
    Trainer(recipe, run).fit()
    return run, recipe


@pytest.fixture
def tiny_named(monkeypatch, trained):
    """A named model 'tiny_shapes' with the run's architecture."""
    _, recipe = trained
    config = recipe.model.build(len(SHAPE_CLASSES)).config

    def tiny_shapes() -> ModelConfig:
        encoder = EncoderConfig("plain", params={"widths": [8, 16, 16]}).to_dict()
        return ModelConfig.from_dict({**config.to_dict(), "encoder": encoder})

    entry = RegistryEntry("tiny_shapes", tiny_shapes, "segzoo", "tests", {})
    monkeypatch.setitem(MODELS._entries, "tiny_shapes", entry)
    return "tiny_shapes"


def _publish(trained, tiny_named, tmp_path, overwrite=False, **kw):
    run, recipe = trained
    weights = tmp_path / "weights"
    weights.mkdir(exist_ok=True)
    (tmp_path / "README.md").write_text(f"# x\n\n{README_START}\nold\n{README_END}\n\nmore text\n")
    info = PublishInfo(dataset="synthetic shapes, val 12", license="CC0-1.0 (data); Apache-2.0 (code)",
                       command="segzoo train tiny.yaml -o run", train_seconds=90.0, image_size=(32, 48), **kw)
    return publish(run, tiny_named, "shapes", recipe, info, out_dir=weights, overwrite=overwrite), weights


def test_publish_writes_file_card_picture_manifest_and_table(trained, tiny_named, tmp_path):
    entry, weights = _publish(trained, tiny_named, tmp_path)
    stem = weights / "tiny_shapes.shapes"
    for suffix in (".safetensors", ".md", ".png"):
        assert (stem.parent / (stem.name + suffix)).stat().st_size > 500, suffix
    assert read_manifest(weights) == [entry]
    assert entry["file"] == "tiny_shapes.shapes.safetensors" and entry["train_minutes"] == 1.5
    assert entry["image_size"] == [32, 48] and entry["cpu_latency_ms"] > 0 and entry["params"] > 0

    loaded = segzoo.from_pretrained(stem.with_name(stem.name + ".safetensors"))
    assert loaded.meta.class_names == SHAPE_CLASSES and loaded.meta.class_colours[1] == [40, 215, 7]
    assert loaded.config.encoder.weights is None
    metrics = evaluate_split(loaded, trained[1])
    assert entry["metrics"]["value"] == pytest.approx(metrics["miou"], abs=1e-5)
    check = evaluate_split(loaded, trained[1], limit=CHECK_IMAGES)
    assert entry["check"]["headline"] == pytest.approx(check["miou"], abs=1e-5) and entry["check"]["images"] == 8

    with safe_open(str(stem.with_name(stem.name + ".safetensors")), framework="pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert (torch.float16 in dtypes) == (entry["storage"] == "fp16")

    card = stem.with_name(stem.name + ".md").read_text()
    for text in ("segzoo train tiny.yaml -o run", "CC0-1.0", "| 1 | disc | 40, 215, 7 |", "tiny_shapes.shapes.png",
                 "Wall time: 2 min", "synthetic shapes", "| 3 | triangle |"):
        assert text in card, text
    readme = (tmp_path / "README.md").read_text()
    assert zoo_table(read_manifest(weights)) in readme and "old" not in readme and readme.endswith("more text\n")
    assert "`tiny_shapes.shapes` | synthetic shapes | mIoU" in readme


def test_republish_replaces_its_row_and_specs_come_from_the_manifest(trained, tiny_named, tmp_path):
    first, weights = _publish(trained, tiny_named, tmp_path)
    with pytest.raises(OutputExistsError, match="tiny_shapes.shapes is already published"):
        _publish(trained, tiny_named, tmp_path, metric="iou:square")
    second, _ = _publish(trained, tiny_named, tmp_path, metric="iou:square", overwrite=True)
    rows = read_manifest(weights)
    assert len(rows) == 1 and rows[0]["metrics"]["headline"] == "IoU (square)"
    spec = manifest_specs("tiny_shapes", weights)["shapes"]
    assert spec.file == second["file"] and spec.sha256 == second["sha256"]
    registry = Registry("model", "segzoo.test.none")
    registry.add("tiny_shapes", MODELS.entry("tiny_shapes").obj, weights=manifest_specs("tiny_shapes", weights))
    assert check_manifest(weights, registry) == []


def test_publish_refuses_a_run_of_another_model(trained, tmp_path):
    run, recipe = trained
    info = PublishInfo(dataset="d", license="l", command="c")
    with pytest.raises(ValueError, match=r"not the named model 'unet_r18'"):
        publish(run, "unet_r18", "x", recipe, info, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_readme_table_is_the_manifests():
    """The README's model-zoo table is generated, never typed: it equals the table of weights/manifest.json."""
    for page in (REPO / "README.md", REPO / "docs" / "zoo.md"):  # the README and the docs site's zoo page
        assert f"{README_START}\n{zoo_table(read_manifest(REPO / 'weights'))}\n{README_END}" in page.read_text()
    listed = subprocess.run([sys.executable, "-m", "segzoo", "list", "--weights"], capture_output=True, text=True,
                            cwd=str(REPO), check=True, timeout=300).stdout
    assert listed.startswith(zoo_table(read_manifest(REPO / "weights")).strip() + "\n")
    from segzoo.storage.specs import declared_table

    assert listed.strip().endswith(declared_table().strip())  # then the checkpoints published elsewhere
    assert check_manifest(REPO / "weights") == []
