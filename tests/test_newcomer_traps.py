"""The traps a new user fell into following the README: masks whose objects are the ignore index, --init beside a
recipe's model, a time limit checked only between epochs, silent logs, and an install that could fetch PyPI's
unrelated "segzoo"."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from PIL import Image

import segzoo
from segzoo.cli import main
from segzoo.core.errors import InvalidValueError
from segzoo.data.scan import scan_masks
from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
from segzoo.training import trainer as trainer_module
from segzoo.training.recipe import Recipe
from segzoo.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
TINY = {"decoder": "unet", "encoder": "plain",
        "overrides": {"encoder_params": {"widths": [8, 16, 16]}, "decoder_channels": [8, 8], "upsampling": "bilinear"}}


def _recipe(root: Path, classes=SHAPE_CLASSES, model: dict | None = TINY, data: dict | None = None, **train) -> dict:
    recipe = {
        "data": {"root": str(root), "classes": list(classes), "val_fraction": 0.25, **(data or {})},
        "augment": {"crop_size": 32, "scale": [0.75, 1.25]},
        "train": {"epochs": 2, "batch_size": 4, "val_batch_size": 3, "lr": 0.01, "progress": False, "plots": False,
                  "deterministic": True, **train},
    }
    if model is not None:
        recipe["model"] = model
    return recipe


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_images=16, size=32, seed=7)


@pytest.fixture
def binary_255(tmp_path) -> Path:
    """A binary dataset saved as most tools save one: background 0, object 255."""
    data = write_shapes_dataset(tmp_path / "binary", n_images=12, size=32, seed=8)
    for mask in (data / "masks").iterdir():
        ids = np.array(Image.open(mask))
        Image.fromarray(np.where(ids > 0, 255, 0).astype(np.uint8)).save(mask)
    return data


@pytest.fixture(autouse=True)
def _own_scan_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


# -- 1. masks whose objects are the ignore index -----------------------------------------------------------------

def test_0_255_masks_with_the_default_ignore_index_are_refused_with_the_fix(binary_255, tmp_path):
    recipe = Recipe.from_dict(_recipe(binary_255, ["background", "object"]))
    with pytest.raises(InvalidValueError, match=r"'object' \(id 1\).*255, the ignore index.*data\.values: "
                                                r"\{0: 0, 255: 1\}"):
        Trainer(recipe, tmp_path / "run")
    assert not (tmp_path / "run" / "last").exists()  # refused before any training
    # the scan cache remembers the counts: the second try is refused too, without decoding a file
    with pytest.raises(InvalidValueError, match=r"data\.values"):
        Trainer(recipe, tmp_path / "run2")
    # the fix the message gives trains
    fixed = Recipe.from_dict(_recipe(binary_255, ["background", "object"], data={"values": {0: 0, 255: 1}},
                                     epochs=1))
    assert Trainer(fixed, tmp_path / "run3").fit()["reason"] == "completed"


def test_the_command_line_says_it_in_one_line(binary_255, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_recipe(binary_255, ["background", "object"])))
    assert main(["train", str(recipe), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.values: {0: 0, 255: 1}" in err and "Traceback" not in err


def test_a_class_no_training_mask_holds_is_a_loud_warning(shapes, tmp_path):
    """Four shape classes named, a fifth that no mask holds: training can go on, but the user is told."""
    recipe = Recipe.from_dict(_recipe(shapes, [*SHAPE_CLASSES, "hexagon"], epochs=1))
    with pytest.warns(UserWarning, match=r"'hexagon' \(id 4\) occur in none of the \d+ train masks"):
        Trainer(recipe, tmp_path / "run")


def test_only_background_in_every_mask_is_refused(tmp_path):
    data = write_shapes_dataset(tmp_path / "empty", n_images=8, size=32, seed=9)
    for mask in (data / "masks").iterdir():
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(mask)
    with pytest.raises(InvalidValueError, match=r"hold class 'background' \(id 0\) and no pixel of 'disc'"):
        Trainer(Recipe.from_dict(_recipe(data)), tmp_path / "run")


def test_scan_counts_come_back_from_the_cache_and_a_damaged_cache_is_rebuilt(shapes, tmp_path):
    recipe = Recipe.from_dict(_recipe(shapes))
    masks = sorted((shapes / "masks").iterdir())
    first = scan_masks(masks, recipe.data.decoder(), tmp_path / "c")
    again = scan_masks(masks, recipe.data.decoder(), tmp_path / "c")
    assert first.decoded == len(masks) and again.decoded == 0 and first.per_mask == again.per_mask
    for cache in (tmp_path / "c").iterdir():  # entries of the wrong shape are only a slower scan
        cache.write_text(json.dumps({str(m.resolve()): ["x"] for m in masks}))
    assert scan_masks(masks, recipe.data.decoder(), tmp_path / "c").per_mask == first.per_mask


@pytest.mark.parametrize("values,match", [({-1: 1}, "entry -1: 1"), ({255: 7}, "entry 255: 7")])
def test_value_maps_with_negative_or_out_of_range_entries_are_refused(shapes, values, match):
    with pytest.raises(InvalidValueError, match=match):
        Recipe.from_dict(_recipe(shapes, data={"values": values})).data.decoder()


# -- 3. --init beside a recipe's model: one rule ------------------------------------------------------------------

def test_init_takes_the_place_of_the_recipe_model_and_says_what_it_replaced(shapes, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps(_recipe(shapes, model=None)))
    bare = Recipe.load(path, init="deeplabv3plus_mnv2.camvid")  # no model section: fine with --init
    assert bare.model.pretrained == "deeplabv3plus_mnv2.camvid" and bare.model.name is None
    with pytest.raises(InvalidValueError, match="needs 'model' and 'data'"):
        Recipe.load(path)  # without --init the model section is needed
    path.write_text(json.dumps(_recipe(shapes, model={"name": "unet_r18", "num_classes": 4,
                                                      "overrides": {"encoder_weights": "w", "aux_head": True}})))
    with pytest.warns(UserWarning, match=r"replaces the recipe's model\.name='unet_r18', "
                                         r"model\.overrides\.encoder_weights='w'"):
        spec = Recipe.load(path, init="x.safetensors").model
    assert (spec.name, spec.pretrained, spec.num_classes, spec.overrides) == (
        None, "x.safetensors", 4, {"aux_head": True})


def test_train_init_with_a_recipe_without_model_section(shapes, tmp_path):
    Trainer(Recipe.from_dict(_recipe(shapes, epochs=1)), tmp_path / "parent").fit()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_recipe(shapes, model=None, epochs=1)))
    assert main(["train", str(recipe), "-o", str(tmp_path / "run"), "--init", str(tmp_path / "parent" / "best")]) == 0
    assert segzoo.from_pretrained(tmp_path / "run" / "best").meta.parent["source"] == str(tmp_path / "parent/best")


# -- 4. a time limit kept within a step, and a log that shows life ------------------------------------------------

class _Clock:
    """The trainer's clock, moved forward by ``jump`` seconds at the ``at``-th loss call."""

    def __init__(self, at: int, jump: float) -> None:
        self.at, self.jump, self.calls, self.offset = at, jump, 0, 0.0
        import time

        self._time = time

    def perf_counter(self) -> float:
        return self._time.perf_counter() + self.offset

    def __getattr__(self, name):
        return getattr(self._time, name)

    def loss(self):
        ce = torch.nn.CrossEntropyLoss(ignore_index=255)

        def forward(logits, target):
            self.calls += 1
            if self.calls == self.at:
                self.offset += self.jump
            return ce(logits, target)
        return forward


class _Loss(torch.nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, logits, target):
        return self.fn(logits, target)


def test_max_seconds_stops_within_a_step_and_resumes_exactly(shapes, tmp_path, monkeypatch, capsys):
    recipe = Recipe.from_dict(_recipe(shapes, epochs=2, max_seconds=3600))
    Trainer(recipe, tmp_path / "full", loss=torch.nn.CrossEntropyLoss(ignore_index=255)).fit()
    clock = _Clock(at=2, jump=7200.0)  # the limit passes during the second step of the first epoch (of 3)
    monkeypatch.setattr(trainer_module, "time", clock)
    cut = Trainer(recipe, tmp_path / "cut", loss=_Loss(clock.loss()))
    summary = cut.fit()
    out = capsys.readouterr().out
    assert summary["reason"] == "time_limit" and summary["epochs"] == 0 and cut.global_step == 2
    assert "train.max_seconds (3600 s) reached" in out and "epoch 1 step 2/3" in out
    assert "validated into best/" in out and (tmp_path / "cut" / "best" / "model.safetensors").is_file()
    monkeypatch.setattr(trainer_module, "time", clock._time)
    resumed = Trainer(recipe, tmp_path / "cut", resume=True, loss=torch.nn.CrossEntropyLoss(ignore_index=255))
    assert resumed.global_step == 2 and resumed.fit()["reason"] == "completed"
    full = segzoo.from_pretrained(tmp_path / "full" / "last").state_dict()
    again = segzoo.from_pretrained(tmp_path / "cut" / "last").state_dict()
    assert all(torch.equal(full[k], again[k]) for k in full)


def test_off_a_terminal_progress_lines_come_inside_an_epoch(shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trainer_module, "PROGRESS_SECONDS", 0.0)
    Trainer(Recipe.from_dict(_recipe(shapes, epochs=1, progress=True)), tmp_path / "run").fit()
    out = capsys.readouterr().out
    assert re.search(r"epoch 1/1 step 1/3 loss \d+\.\d{4} lr \S+ \d+\.\d img/s", out)
    assert "epoch 1/1 step 3/3" in out and "epoch 1/1: validating on 4 images" in out
    monkeypatch.setattr(trainer_module, "PROGRESS_SECONDS", 3600.0)
    Trainer(Recipe.from_dict(_recipe(shapes, epochs=1, progress=True)), tmp_path / "quiet").fit()
    assert "step 1/3" not in capsys.readouterr().out  # no more often than asked


# -- 2. the distribution name, 5. skip reasons --------------------------------------------------------------------

def test_the_distribution_is_not_pypis_segzoo_and_nothing_documented_installs_that():
    """PyPI's "segzoo" is an unrelated genomics tool: segzoo's distribution is segzoo-pytorch, the plugin depends
    on that name, and every documented pip command installs from the repository or names real dependencies."""
    ours = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
    plugin = tomllib.loads((REPO / "plugins/segzoo-extra-decoders/pyproject.toml").read_text())["project"]
    assert ours == "segzoo-pytorch" and ours in plugin["dependencies"] and "segzoo" not in plugin["dependencies"]
    assert set(metadata.packages_distributions()["segzoo"]) == {ours}
    documents = [REPO / "README.md", *REPO.glob("docs/*.md"), *REPO.glob("segzoo/**/*.py"),
                 *REPO.glob("benchmarks/**/*.py")]
    bad = [f"{path.relative_to(REPO)}: {line.strip()}" for path in documents
           for line in path.read_text().splitlines()
           if re.search(r"""pip install\s+(-\S+\s+)*["']?segzoo(\[|["'\s]|$)""", line)]
    assert not bad, f"these would install PyPI's unrelated 'segzoo': {bad}"


def test_install_hints_name_the_extras_of_pyproject():
    from segzoo.core.extras import EXTRAS, install_hint

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {k: tuple(v) for k, v in extras.items() if k != "dev"} == EXTRAS
    assert install_hint("openvino") == ("pip install openvino nncf onnx onnxscript onnxruntime (or, in a segzoo "
                                        "checkout, pip install -e '.[openvino]')")


def test_skipped_tests_say_why():
    """The test command reports every skip with its reason (-rs), and no skip in the suite lacks one."""
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert re.search(r"(^|\s)-r\w*s", options)
    bare = [f"{path.name}:{n}" for path in REPO.glob("tests/**/*.py")
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"pytest\.skip\(\s*\)|mark\.skip\(\s*\)|skipif\((?![^)]*reason)[^)]*\)$", line)]
    assert not bare, f"skips without a reason: {bare}"
