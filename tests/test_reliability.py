"""Bad input, table-driven: every case must end in the named exception (API) or exit status (CLI), with a message
naming the culprit, no traceback from the CLI, and every file that existed before byte-identical after.

The README's reliability section lists these cases by id (checked below)."""

from __future__ import annotations

import argparse
import re
import shutil
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

import segzoo
from conftest import REPO, TINY_UNET
from helpers.files import cli, snapshot
from segzoo.cli import main
from segzoo.core.config import EncoderConfig
from segzoo.core.errors import (
    DownloadError,
    InvalidTypeError,
    InvalidValueError,
    MissingFileError,
    NotAFolderError,
    OutputExistsError,
    SegzooError,
    UnknownNameError,
)
from segzoo.core.registry import ENCODERS
from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
from segzoo.encoders import Encoder, build_encoder
from segzoo.storage.format import write_weights
from segzoo.training.recipe import Recipe
from segzoo.training.trainer import Trainer

TINY = TINY_UNET
TRAIN = {"epochs": 1, "batch_size": 2, "lr": 0.01, "progress": False, "plots": False}


def tiny_model(num_classes: int, **kw):
    return segzoo.create_model("unet", "plain", num_classes, encoder_params={"widths": [8, 16, 16]},
                               decoder_channels=[8, 8], upsampling="bilinear", **kw)


def recipe_dict(root: Path, model: dict | None = None, **train) -> dict:
    return {"model": model or TINY, "data": {"root": str(root), "classes": SHAPE_CLASSES, "val_fraction": 0.25},
            "augment": {"crop_size": 32}, "train": {**TRAIN, **train}}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Files the cases start from: data, a recipe, weights of 4 / 1 / 5 classes, a finished run, bad files."""
    root = tmp_path_factory.mktemp("world")
    write_shapes_dataset(root / "shapes", n_images=8, size=32, seed=3)
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe_dict(root / "shapes")))
    for n in (4, 1, 5):
        model = tiny_model(n)
        model.meta.class_names = SHAPE_CLASSES if n == 4 else None
        write_weights(model, root / f"w{n}.safetensors")
    Trainer(Recipe.from_dict(recipe_dict(root / "shapes")), root / "run").fit()
    import argparse as _argparse  # a class outside torch's weights_only allow-list stands for arbitrary code

    torch.save({"w": torch.zeros(1), "obj": _argparse.Namespace(a=1)}, root / "evil.pth")
    (root / "truncated.safetensors").write_bytes((root / "w4.safetensors").read_bytes()[:200])
    save_file({"w": torch.zeros(2)}, str(root / "plain.safetensors"))
    (root / "bad.yaml").write_text("model: {name: unet_r18\ndata: [")
    (root / "photos").mkdir()
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(root / "photos" / "a.png")
    (root / "afile").write_text("not a folder")
    return root




def bad_mask(w: Path, names=("shape_0001",), value=9) -> None:
    for name in names:
        mask = np.array(Image.open(w / "shapes" / "masks" / f"{name}.png"))
        mask[0, 0] = value
        Image.fromarray(mask).save(w / "shapes" / "masks" / f"{name}.png")


def train_small(w: Path, **kw) -> Any:
    """4 pairs, batch 2, last incomplete batch dropped: a bad sample might never be loaded."""
    return Trainer(Recipe.from_dict({**recipe_dict(w / "shapes"), "data": {
        "root": str(w / "shapes"), "classes": SHAPE_CLASSES, "val_fraction": 0.25, "limit": 4}}), w / "new", **kw)


def other_model_run(w: Path) -> Any:
    other = dict(TINY, overrides={**TINY["overrides"], "decoder_channels": [16, 8]})
    return Trainer(Recipe.from_dict(recipe_dict(w / "shapes", model=other)), w / "run", resume=True)


def evil_state(w: Path) -> Any:
    shutil.copyfile(w / "evil.pth", w / "run" / "last" / "training_state.pt")
    return w  # set up only; the run below resumes


class IgnoresStride(Encoder):
    """A plugin-style encoder that ignores ``output_stride`` (declares and returns stride 32)."""

    def __init__(self, config: EncoderConfig, lie: bool = False) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(3 if i == 0 else 4, 4, 3, 2, 1) for i in range(5))
        self.out_channels = (4,) * 5
        self.reductions = (2, 4, 8, 16, 16) if lie else (2, 4, 8, 16, 32)
        self.input_divisor = 32

    def forward(self, x):
        out = []
        for conv in self.convs:
            x = conv(x)
            out.append(x)
        return out


@dataclass
class Case:
    id: str
    run: Callable[[Path], Any]
    expect: type[BaseException] | int  # an exception type (API) or an exit status (CLI)
    match: str  # the culprit, as a regex the message must contain
    setup: Callable[[Path], Any] | None = None


CASES = [
    # -- models and the registry
    Case("unknown-model", lambda w: segzoo.create("unet_r3"), UnknownNameError, r"unet_r3.*unet_r34"),
    Case("unknown-override", lambda w: segzoo.create("unet_r18", bogus=1), InvalidTypeError, r"'bogus'"),
    Case("zero-classes", lambda w: segzoo.create("unet_r18", num_classes=0), InvalidValueError, r"num_classes.* 0"),
    Case("bad-output-stride", lambda w: segzoo.create("unet_r18", output_stride=7), InvalidValueError,
         r"output_stride.*7"),
    Case("unknown-decoder", lambda w: segzoo.create_model("unte", "resnet18", 2), UnknownNameError, r"'unte'"),
    Case("encoder-ignores-stride",
         lambda w: build_encoder(EncoderConfig("ignores_stride", output_stride=16)), InvalidValueError,
         r"ignores_stride.*output_stride=16.*\[2, 4, 8, 16, 32\]"),
    Case("encoder-lies-about-reductions",
         lambda w: build_encoder(EncoderConfig("lies_about_stride", output_stride=16)), InvalidValueError,
         r"lies_about_stride.*declares reductions \[2, 4, 8, 16, 16\].*reduced by \[2, 4, 8, 16, 32\]"),
    # -- weights files
    Case("missing-weights-file", lambda w: segzoo.from_pretrained(w / "nope.safetensors"), MissingFileError,
         r"nope\.safetensors"),
    Case("truncated-weights", lambda w: segzoo.from_pretrained(w / "truncated.safetensors"), InvalidValueError,
         r"truncated\.safetensors"),
    Case("plain-state-dict", lambda w: segzoo.from_pretrained(w / "plain.safetensors"), InvalidValueError,
         r"plain\.safetensors.*without a segzoo config"),
    Case("bad-hub-name", lambda w: segzoo.from_pretrained("hf-hub:justaname"), InvalidValueError, r"hf-hub:justaname"),
    Case("unknown-weights-tag", lambda w: segzoo.from_pretrained("unet_carvana.nope"), UnknownNameError,
         r"'nope'.*scale0\.5"),
    Case("no-published-weights", lambda w: segzoo.create("unet_r34", pretrained=True), InvalidValueError,
         r"unet_r34"),
    Case("offline-url-weights", lambda w: segzoo.create("unet_carvana", pretrained="scale0.5"), DownloadError,
         r"unet_carvana\.scale0\.5.*github\.com"),
    Case("missing-encoder-weights-name", lambda w: tiny_model(2, encoder_weights="nothing.in1k"), MissingFileError,
         r"'nothing\.in1k'.*SEGZOO_WEIGHTS"),
    Case("pickled-code-refused", lambda w: tiny_model(2, encoder_weights=str(w / "evil.pth")), InvalidValueError,
         r"evil\.pth.*argparse\.Namespace"),
    Case("encoder-weights-do-not-fit",
         lambda w: segzoo.create("unet_r18", encoder="test_resnet", encoder_weights=str(w / "w4.safetensors")),
         InvalidValueError, r"w4\.safetensors.*do not fit"),
    Case("metric-not-a-number", lambda w: tiny_model(4).save_pretrained(w / "run" / "best", metrics={"mIoU": "high"}),
         InvalidValueError, r"'mIoU'.*'high'"),
    Case("nan-weights", lambda w: nan_model().save_pretrained(w / "run" / "best"), InvalidValueError,
         r"tensor 'head\..*NaN"),
    Case("class-names-count", lambda w: tiny_model(4).save_pretrained(w / "out", class_names=["a", "b"]),
         InvalidValueError, r"2 class names.*4 classes"),
    Case("save-onto-a-file", lambda w: tiny_model(4).save_pretrained(w / "afile"), NotAFolderError, r"afile"),
    # -- recipes
    Case("recipe-unknown-section", lambda w: Recipe.from_dict({**recipe_dict(w), "trian": {}}), InvalidValueError,
         r"'trian'"),
    Case("recipe-wrong-type", lambda w: Recipe.load(w / "recipe.yaml", ["train.lr=abc"]), InvalidValueError,
         r"train\.lr.*number.*'abc'"),
    Case("recipe-not-yaml", lambda w: Recipe.load(w / "bad.yaml"), InvalidValueError, r"bad\.yaml.*not valid YAML"),
    Case("recipe-missing-classes", lambda w: Recipe.from_dict({"model": TINY, "data": {"root": "x"}}),
         InvalidValueError, r"'data'.*\['classes'\]"),
    Case("recipe-unknown-choice", lambda w: Recipe.load(w / "recipe.yaml", ["train.monitor=accuracy"]),
         InvalidValueError, r"train\.monitor.*'accuracy'"),
    Case("absent-device", lambda w: Trainer(Recipe.from_dict(recipe_dict(w / "shapes", device="cuda:3")), w / "new"),
         InvalidValueError, r"'cuda:3'.*not available"),
    # -- data and training runs
    Case("bad-mask-never-loaded", train_small, InvalidValueError, r"1 of 6 masks.*shape_0001\.png.*\[9\]",
         setup=bad_mask),
    Case("every-bad-mask-listed", lambda w: Trainer(Recipe.from_dict(recipe_dict(w / "shapes")), w / "new"),
         InvalidValueError, r"2 of 8 masks.*shape_0002\.png.*shape_0005\.png",
         setup=lambda w: bad_mask(w, ("shape_0002", "shape_0005"), 200)),
    Case("missing-data-root", lambda w: Trainer(Recipe.from_dict(recipe_dict(w / "nowhere")), w / "new"),
         MissingFileError, r"nowhere"),
    Case("run-exists", lambda w: Trainer(Recipe.from_dict(recipe_dict(w / "shapes")), w / "run"), OutputExistsError,
         r"'.*run' already holds a training run.*--resume.*--overwrite"),
    Case("resume-and-overwrite",
         lambda w: Trainer(Recipe.from_dict(recipe_dict(w / "shapes")), w / "run", resume=True, overwrite=True),
         InvalidValueError, r"--resume and --overwrite"),
    Case("resume-changed-model", other_model_run, InvalidValueError, r"'.*run.last'.*does not match the recipe"),
    Case("resume-nothing", lambda w: train_small(w, resume=True), MissingFileError, r"new.last.*not a training"),
    Case("resume-pickled-state", lambda w: Trainer(Recipe.from_dict(recipe_dict(w / "shapes")), w / "run",
                                                   resume=True),
         InvalidValueError, r"training state .*training_state\.pt.*argparse\.Namespace", setup=evil_state),
    # -- the command line: exit status 2, one line, no traceback
    Case("cli-train-onto-run", cli("train", "{w}/recipe.yaml", "-o", "{w}/run"), 2, r"--resume.*--overwrite"),
    Case("cli-train-bad-value", cli("train", "{w}/recipe.yaml", "-o", "{w}/new", "--set", "train.epochs=many"), 2,
         r"train\.epochs.*'many'"),
    Case("cli-train-bad-override", cli("train", "{w}/recipe.yaml", "-o", "{w}/new", "--set", "epochs"), 2,
         r"'epochs'.*section\.key=value"),
    Case("cli-train-absent-device", cli("train", "{w}/recipe.yaml", "-o", "{w}/new", "--set", "train.device=cuda"),
         2, r"'cuda'"),
    Case("cli-train-missing-recipe", cli("train", "{w}/nope.yaml", "-o", "{w}/new"), 2, r"nope\.yaml"),
    Case("cli-eval-one-class-weights", cli("eval", "{w}/recipe.yaml", "-w", "{w}/w1.safetensors"), 2,
         r"w1\.safetensors.*2 classes.*4 classes"),
    Case("cli-eval-five-class-weights", cli("eval", "{w}/recipe.yaml", "-w", "{w}/w5.safetensors"), 2,
         r"w5\.safetensors.*5 classes.*4 classes"),
    Case("cli-convert-onto-output", cli("convert", "{w}/evil.pth", "{w}/w4.safetensors", "--from", "torchvision"), 2,
         r"w4\.safetensors.*--overwrite"),
    Case("cli-predict-missing-input", cli("predict", "{w}/nothing.png", "-w", "{w}/w4.safetensors", "-o", "{w}/o"), 2,
         r"nothing\.png"),
    Case("cli-predict-absent-device", cli("predict", "{w}/photos", "-w", "{w}/w4.safetensors", "--device", "cuda:0"),
         2, r"'cuda:0'"),
    Case("cli-predict-missing-weights", cli("predict", "{w}/photos", "-w", "{w}/none.safetensors", "-o", "{w}/o"), 2,
         r"none\.safetensors"),
    Case("cli-predict-onto-outputs", cli("predict", "{w}/photos", "-w", "{w}/w4.safetensors", "-o", "{w}/photos"), 2,
         r"photos/a\.png.*--overwrite"),
    Case("cli-eval-onto-output", cli("eval", "{w}/recipe.yaml", "-w", "{w}/w4.safetensors", "--output",
                                     "{w}/recipe.yaml"), 2, r"recipe\.yaml.*--overwrite"),
    Case("cli-info-unknown-model", cli("info", "deeplab"), 2, r"'deeplab'"),
    Case("cli-info-bad-size", cli("info", "unet_r18", "--size", "-5"), 2, r"--size.*-5"),
    Case("cli-demo-too-few-images", cli("demo", "--images", "0", "--output", "{w}/demo"), 2, r"at least 8.*got 0"),
    Case("cli-convert-missing-source", cli("convert", "{w}/nothing.pth", "{w}/o.safetensors", "--from", "smp"), 2,
         r"nothing\.pth.*does not exist"),
    Case("cli-bad-choice", cli("eval", "{w}/recipe.yaml", "-w", "{w}/w4.safetensors", "--split", "test"), 2,
         r"invalid choice: 'test'"),
]


def nan_model():
    model = tiny_model(4)
    with torch.no_grad():
        next(model.head.parameters()).fill_(float("nan"))
    return model


@pytest.fixture
def plugin_encoders(monkeypatch):
    for name, lie in (("ignores_stride", False), ("lies_about_stride", True)):
        monkeypatch.setitem(ENCODERS._entries, name, _entry(name, lambda config, lie=lie: IgnoresStride(config, lie)))


def _entry(name, builder):
    from segzoo.core.registry import RegistryEntry

    return RegistryEntry(name, builder, "a-plugin-dist", f"plugin:{name}", {})


def test_there_are_enough_cases():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, world, tmp_path, monkeypatch, capsys, plugin_encoders):
    w = tmp_path / "w"
    shutil.copytree(world, w)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(url, dst, size=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr("segzoo.storage.specs._download", offline)
    if case.setup:
        case.setup(w)
    before = snapshot(w)
    if isinstance(case.expect, int):
        try:
            status = case.run(w)
        except SystemExit as exc:  # argparse's own errors
            status = exc.code
        err = capsys.readouterr().err
        assert status == case.expect, err
        assert re.search(case.match, err, re.S), err
        assert "Traceback" not in err and "error: " in err.strip().splitlines()[-1], err  # argparse adds usage
    else:
        with pytest.raises(case.expect) as info:
            case.run(w)
        assert isinstance(info.value, SegzooError)
        message = str(info.value)
        assert re.search(case.match, message, re.S), message
        assert "weights_only=False" not in message
    after = snapshot(w)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"files changed or removed: {changed}"


def test_readme_lists_every_case():
    section = (REPO / "docs" / "reliability.md").read_text()  # the docs site's Reliability page
    missing = [c.id for c in CASES if f"`{c.id}`" not in section]
    assert not missing, f"README's reliability section lacks {missing}"


def test_overwrite_says_so_and_starts_clean(world, tmp_path, capsys):
    w = tmp_path / "w"
    shutil.copytree(world, w)
    (w / "run" / "notes.txt").write_text("mine")
    assert main(["train", str(w / "recipe.yaml"), "-o", str(w / "run"), "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert "--overwrite: removing the previous run's" in out
    assert len((w / "run" / "metrics.jsonl").read_text().splitlines()) == 2  # one run, not two appended
    assert (w / "run" / "notes.txt").read_text() == "mine"  # only the run's own outputs are replaced


def test_mask_scan_is_cached_by_size_and_mtime(world, tmp_path, monkeypatch):
    from segzoo.data.scan import scan_masks

    w = tmp_path / "w"
    shutil.copytree(world, w)
    recipe = Recipe.from_dict(recipe_dict(w / "shapes"))
    masks = sorted((w / "shapes" / "masks").iterdir())
    cache = tmp_path / "cache"
    assert scan_masks(masks, recipe.data.decoder(), cache).decoded == 8
    assert scan_masks(masks, recipe.data.decoder(), cache).decoded == 0  # remembered
    bad_mask(w, ("shape_0003",))
    with pytest.raises(InvalidValueError, match="shape_0003"):
        scan_masks(masks, recipe.data.decoder(), cache)  # a changed file is decoded again


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only segzoo's user-facing errors become one line; anything else propagates with its traceback."""
    def broken(args: argparse.Namespace) -> int:
        raise KeyError("internal")

    monkeypatch.setattr("segzoo.cli.commands.listing.run", broken)
    with pytest.raises(KeyError, match="internal"):
        main(["list"])
