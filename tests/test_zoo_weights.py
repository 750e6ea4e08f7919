"""The zoo's published weights (weights/manifest.json): they load offline from the repository alone, by every
documented form, and reproduce their manifest metric on validation images."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import segzoo
from conftest import REPO, shared_data_dir
from segzoo.storage.manifest import read_manifest

ENTRIES = read_manifest(REPO / "weights")
IDS = [f"{e['model']}.{e['tag']}" for e in ENTRIES]

# Loads a zoo weight from a copy of the package and weights/ in a folder with no ../shared beside it, no segzoo
# variable set and an empty torch.hub cache; Python-level opens under the real shared folder are errors too.
ISOLATED = """
import sys
shared = sys.argv[2]
def guard(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(shared):
        raise RuntimeError(f"opened {args[0]} under {shared}")
sys.addaudithook(guard)
import torch, segzoo
model = segzoo.from_pretrained(sys.argv[1])
with torch.no_grad():
    out = model(torch.zeros(1, 3, 64, 64))
print(model.config.decoder, tuple(out.shape), segzoo.__file__)
"""


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_loads_with_shared_absent(entry, tmp_path):
    repo = tmp_path / "clone"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "segzoo", repo / "segzoo", ignore=ignore)
    shutil.copytree(REPO / "weights", repo / "weights", ignore=ignore)
    assert not (repo.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGZOO_")}
    env.update(PYTHONPATH=str(repo), TORCH_HOME=str(tmp_path / "torch"), HF_HUB_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"))
    run = subprocess.run([sys.executable, "-c", ISOLATED, f"{entry['model']}.{entry['tag']}",
                          str(REPO.parent / "shared")], capture_output=True, text=True, cwd=str(repo), env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    decoder, *_, module = run.stdout.split()
    assert decoder == segzoo.model_info(entry["model"])["config"]["decoder"]
    assert module.startswith(str(repo))  # the copy was loaded, not the checkout beside ../shared


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_every_documented_form_gives_the_same_model(entry):
    name, tag = entry["model"], entry["tag"]
    x = torch.randn(1, 3, 48, 64)
    models = [
        segzoo.from_pretrained(f"{name}.{tag}"),
        segzoo.create(name, pretrained=tag),
        torch.hub.load(str(REPO), name, source="local", pretrained=tag),
    ]
    with torch.no_grad():
        outs = [m.eval()(x) for m in models]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=0, atol=0)
    meta = models[0].meta
    assert meta.class_names and len(meta.class_names) == models[0].num_classes
    assert meta.license == entry["license"] and meta.encoder_weights  # provenance kept, never read
    assert models[0].config.encoder.weights is None


@pytest.mark.parametrize("entry", ENTRIES[:1], ids=IDS[:1])
def test_predict_cli_with_a_zoo_name(entry, tmp_path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    run = subprocess.run([sys.executable, "-m", "segzoo", "predict", str(tmp_path / "a.png"), "-w",
                          f"{entry['model']}.{entry['tag']}", "-o", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    ids = np.array(Image.open(tmp_path / "out" / "a.png"))
    assert ids.shape == (60, 80) and ids.max() < len(segzoo.from_pretrained(f"{entry['model']}.{entry['tag']}")
                                                     .meta.class_names)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_reproduces_manifest_metric_on_val_images(entry):
    from segzoo.training.publish import evaluate_split, headline
    from segzoo.training.recipe import Recipe

    recipe = Recipe.load(entry["recipe"])
    if not (shared_data_dir() / recipe.data.root).is_dir():
        pytest.skip(f"real data not found at {shared_data_dir() / recipe.data.root} (set SEGZOO_DATA)")
    model = segzoo.from_pretrained(f"{entry['model']}.{entry['tag']}")
    check = entry["check"]
    metrics = evaluate_split(model, recipe, limit=check["images"])
    assert metrics["images"] == check["images"]
    assert metrics["miou"] == pytest.approx(check["miou"], abs=2e-3)
    classes = list(recipe.data.classes)
    assert headline(metrics, _metric_key(entry, classes), classes)[1] == pytest.approx(check["headline"], abs=2e-3)


def _metric_key(entry, classes):
    """The publish --metric behind a manifest headline such as 'mIoU' or 'Dice (nucleus)'."""
    label = entry["metrics"]["headline"]
    if label == "mIoU":
        return "miou"
    kind, name = label.rstrip(")").split(" (")
    return f"{kind.lower()}:{name}"
