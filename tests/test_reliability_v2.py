"""Reliability v2: hostile and unlucky inputs. Table-driven like ``test_reliability.py``: every case ends in the
named exception (API) or exit status 2 (CLI) with a message naming the culprit, no traceback, and every file that
existed before byte-identical after. Below the table: files that cannot tear or mix (interrupted and concurrent
writes, by monkeypatching the write or rename that a kill would interrupt), inputs that cannot exhaust the
machine, and one slow test that kills real processes with SIGKILL.

The README's reliability section lists the table's cases by id (checked below)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import segzoo
from conftest import REPO, TINY_UNET
from helpers.files import cli, snapshot
from segzoo.cli import main
from segzoo.core.errors import (
    DownloadError,
    InvalidTypeError,
    InvalidValueError,
    SegzooError,
    UnknownNameError,
    WriteError,
)
from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
from segzoo.storage.format import write_weights
from segzoo.training.recipe import Recipe
from segzoo.training.trainer import Trainer

TRAIN = {"epochs": 1, "batch_size": 2, "lr": 0.01, "progress": False, "plots": False}


def tiny_model(num_classes: int = 3):
    return segzoo.create_model("unet", "plain", num_classes, encoder_params={"widths": [8, 16, 16]},
                               decoder_channels=[8, 8], upsampling="bilinear")


def recipe_dict(root: Path, **train) -> dict:
    return {"model": TINY_UNET, "data": {"root": str(root), "classes": SHAPE_CLASSES, "val_fraction": 0.25},
            "augment": {"crop_size": 32}, "train": {**TRAIN, **train}}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Weights, weights with forged headers, data, a recipe, images (a bomb among them), bad sidecar files."""
    root = tmp_path_factory.mktemp("world2")
    write_shapes_dataset(root / "shapes", n_images=8, size=32, seed=3)
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe_dict(root / "shapes")))
    good = write_weights(tiny_model(), root / "good.safetensors")
    with safe_open(str(good), "pt") as f:
        header, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config, meta = json.loads(header["segzoo.config"]), json.loads(header["segzoo.meta"])

    def forge(name: str, config_changes=None, encoder_changes=None, meta_changes=None, **keys) -> None:
        c = json.loads(json.dumps(config))
        c.update(config_changes or {})
        c["encoder"].update(encoder_changes or {})
        m = {**meta, **(meta_changes or {})}
        save_file(state, str(root / f"{name}.safetensors"),
                  metadata={**header, "segzoo.config": json.dumps(c), "segzoo.meta": json.dumps(m), **keys})

    forge("classes-bomb", {"num_classes": 10**9})
    forge("channels-bomb", {"decoder_params": {**config["decoder_params"], "decoder_channels": [8192, 8192]}})
    forge("reads-other-file", encoder_changes={"name": "resnet18", "params": {"checkpoint_path": str(good)}})
    forge("channels-not-numbers", {"decoder_params": {**config["decoder_params"], "decoder_channels": "ab"}})
    forge("aux-head-string", {"aux_head": "yes"})
    forge("colours-not-rgb", meta_changes={"class_colours": [[1, 2], [3], [4]]})
    forge("range-one-number", meta_changes={"preprocessing": {"input_range": [1]}})
    forge("preprocessing-list", meta_changes={"preprocessing": [1, 2]})
    forge("requires-no-distribution", **{"segzoo.requires": json.dumps([{"kind": "encoder", "name": "zzz"}])})
    forge("config-not-json", **{"segzoo.config": "{"})
    forge("class-names-number", meta_changes={"class_names": 5})
    folder = root / "folder"
    tiny_model().save_pretrained(str(folder))
    for name, text in (("torn-sidecar", "{not json"), ("sidecar-number", '{"eval": 5}'),
                       ("sidecar-no-eval", '{"train": {}}')):
        shutil.copytree(folder, root / name)
        (root / name / "transforms.json").write_text(text)
    (root / "photos").mkdir()
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(root / "photos" / "a.png")
    # a decompression bomb: a 1-bit 20000 x 20000 PNG is a few kilobytes on disk
    Image.new("1", (20000, 20000)).save(root / "bomb.png", optimize=True)
    (root / "text.png").write_text("not an image")
    (root / "text.onnx").write_text("not a graph")
    (root / "text.pt2").write_text("not a program")
    (root / "pairs" / "images").mkdir(parents=True)
    (root / "pairs" / "masks").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(root / "pairs" / "images" / "a.png")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "pairs" / "masks" / "a.png")
    Image.new("1", (20000, 20000)).save(root / "pairs" / "masks" / "b.png")
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(root / "pairs" / "images" / "b.png")
    return root




def train_set(*sets: str) -> Callable[[Path], int]:
    return cli("train", "{w}/recipe.yaml", "-o", "{w}/new", *[x for s in sets for x in ("--set", s)])


def load(name: str) -> Callable[[Path], Any]:
    return lambda w: segzoo.from_pretrained(w / f"{name}.safetensors")


@dataclass
class Case:
    id: str
    run: Callable[[Path], Any]
    expect: type[BaseException] | int
    match: str


CASES = [
    # -- weights headers: checked before anything is allocated or read
    Case("header-classes-bomb", load("classes-bomb"), InvalidValueError,
         r"classes-bomb.*does not describe the file's tensors.*head"),
    Case("header-channels-bomb", load("channels-bomb"), InvalidValueError,
         r"channels-bomb.*does not describe the file's tensors.*decoder"),
    Case("header-reads-other-file", load("reads-other-file"), InvalidValueError,
         r"reads-other-file.*\['checkpoint_path'\].*read other files"),
    Case("header-channels-not-numbers", load("channels-not-numbers"), InvalidValueError,
         r"channels-not-numbers.*cannot build a model"),
    Case("header-aux-head-string", load("aux-head-string"), InvalidValueError, r"aux-head-string.*aux_head.*'yes'"),
    Case("header-colours-not-rgb", load("colours-not-rgb"), InvalidValueError, r"colours-not-rgb.*RGB triples"),
    Case("header-range-one-number", load("range-one-number"), InvalidValueError, r"range-one-number.*input_range"),
    Case("header-preprocessing-list", load("preprocessing-list"), InvalidValueError,
         r"preprocessing-list.*preprocessing.*a mapping"),
    Case("header-requires-no-distribution", load("requires-no-distribution"), UnknownNameError,
         r"requires-no-distribution.*'zzz'"),
    Case("header-config-not-json", load("config-not-json"), InvalidValueError, r"config-not-json.*segzoo.config"),
    Case("header-class-names-number", load("class-names-number"), InvalidValueError,
         r"class-names-number.*class_names: expected list"),
    # -- sidecar files and files that are not what their name says
    Case("sidecar-torn", cli("predict", "{w}/photos", "-w", "{w}/torn-sidecar", "-o", "{w}/o"), 2,
         r"torn-sidecar/transforms\.json.*not valid"),
    Case("sidecar-number", cli("predict", "{w}/photos", "-w", "{w}/sidecar-number", "-o", "{w}/o"), 2,
         r"sidecar-number/transforms\.json.*not one segzoo writes"),
    Case("sidecar-no-eval", cli("predict", "{w}/photos", "-w", "{w}/sidecar-no-eval", "-o", "{w}/o"), 2,
         r"sidecar-no-eval/transforms\.json.*'eval'"),
    Case("image-is-text", cli("predict", "{w}/text.png", "-w", "{w}/good.safetensors", "-o", "{w}/o"), 2,
         r"text\.png"),
    Case("onnx-is-text", cli("predict", "{w}/photos", "-w", "{w}/text.onnx", "-o", "{w}/o"), 2,
         r"text\.onnx.*not a readable ONNX"),
    Case("pt2-is-text", cli("predict", "{w}/photos", "-w", "{w}/text.pt2", "-o", "{w}/o"), 2,
         r"text\.pt2.*not a readable torch\.export"),
    Case("recipe-is-a-list", cli("train", "{w}/photos/../recipe-list.yaml", "-o", "{w}/new"), 2,
         r"recipe-list\.yaml"),
    # -- images that would exhaust the memory
    Case("image-bomb", cli("predict", "{w}/bomb.png", "-w", "{w}/good.safetensors", "-o", "{w}/o"), 2,
         r"bomb\.png.*20000x20000.*megapixels"),
    Case("mask-bomb", cli("eval", "-w", "{w}/good.safetensors", "--images", "{w}/pairs/images", "--masks",
                          "{w}/pairs/masks", "--quiet"), 2, r"masks/b\.png.*20000x20000"),
    # -- nonsensical numbers and silently ignored options
    Case("train-lr-nan", train_set("train.lr=.nan"), 2, r"train\.lr.*nan"),
    Case("train-crop-zero", train_set("augment.crop_size=0"), 2, r"augment\.crop_size.*0"),
    Case("train-scale-negative", train_set("augment.scale=[-1, 2]"), 2, r"augment\.scale.*-1"),
    Case("train-val-fraction-above-one", train_set("data.val_fraction=1.5"), 2, r"data\.val_fraction.*1\.5"),
    Case("train-ema-above-one", train_set("train.ema_decay=2"), 2, r"train\.ema_decay.*2"),
    Case("train-warmup-negative", train_set("train.warmup_steps=-5"), 2, r"train\.warmup_steps.*-5"),
    Case("train-clip-nan", train_set("train.clip_grad_norm=.nan"), 2, r"train\.clip_grad_norm.*nan"),
    Case("train-max-seconds-negative", train_set("train.max_seconds=-1"), 2, r"train\.max_seconds.*-1"),
    Case("train-workers-negative", train_set("train.num_workers=-1"), 2, r"train\.num_workers.*-1"),
    Case("train-jitter-negative", train_set("augment.colour_jitter=-1"), 2, r"augment\.colour_jitter.*-1"),
    Case("train-class-weights-count", train_set("train.class_weights=[1]"), 2, r"class_weights has 1 weights.*4"),
    Case("train-ignore-index-300", train_set("data.ignore_index=300"), 2, r"data\.ignore_index.*300"),
    Case("ignored-momentum", train_set("train.momentum=0.5"), 2, r"train\.momentum would be ignored.*adamw"),
    Case("ignored-poly-power", train_set("train.scheduler=cosine", "train.poly_power=2"), 2,
         r"train\.poly_power would be ignored.*cosine"),
    Case("ignored-train-list", train_set("data.train_list=x.txt"), 2, r"data\.train_list would be ignored.*folder"),
    Case("ignored-focus-p", train_set("augment.focus_p=0.5"), 2, r"focus_p.*needs augment\.focus_classes"),
    Case("predict-scales-nan", cli("predict", "{w}/photos", "-w", "{w}/good.safetensors", "-o", "{w}/o",
                                   "--scales", "nan"), 2, r"scales.*nan"),
    Case("predict-overlap-without-windows", cli("predict", "{w}/photos", "-w", "{w}/good.safetensors", "-o",
                                                "{w}/o", "--tile", "none", "--overlap", "0.5"), 2,
         r"--overlap.*--tile none"),
    Case("eval-split-with-folders", cli("eval", "-w", "{w}/good.safetensors", "--images", "{w}/photos",
                                        "--masks", "{w}/photos", "--split", "train"), 2, r"--split.*recipe"),
    Case("demo-seconds-infinite", cli("demo", "--seconds", "inf", "-o", "{w}/demo"), 2, r"inf"),
    Case("pixel-limit-not-a-number", lambda w: (os.environ.__setitem__("SEGZOO_MAX_IMAGE_PIXELS", "lots"),
                                                main(["predict", str(w / "photos"), "-w",
                                                      str(w / "good.safetensors"), "-o", str(w / "o")]))[1], 2,
         r"SEGZOO_MAX_IMAGE_PIXELS.*'lots'"),
    # -- outputs that would collide or wrap
    Case("predict-outputs-collide", cli("predict", "{w}/clash", "-w", "{w}/good.safetensors", "-o", "{w}/o"), 2,
         r"x\.jpg.*x\.png.*would both write"),
    Case("predict-overlay-name-collides", cli("predict", "{w}/clash2", "-w", "{w}/good.safetensors", "-o", "{w}/o"),
         2, r"y\.png.*y_overlay\.png.*would both write"),
]


def test_there_are_enough_new_cases():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case, world, tmp_path, monkeypatch, capsys):
    w = tmp_path / "w"
    shutil.copytree(world, w)
    (w / "recipe-list.yaml").write_text("- 1\n- 2\n")
    for folder, names in (("clash", ("x.jpg", "x.png")), ("clash2", ("y.png", "y_overlay.png"))):
        (w / folder).mkdir()
        for name in names:
            Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(w / folder / name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("SEGZOO_MAX_IMAGE_PIXELS", raising=False)
    before = snapshot(w)
    try:
        if isinstance(case.expect, int):
            try:
                status = case.run(w)
            except SystemExit as exc:
                status = exc.code
            err = capsys.readouterr().err
            assert status == case.expect, err
            assert re.search(case.match, err, re.S), err
            assert "Traceback" not in err, err
        else:
            with pytest.raises(case.expect) as info:
                case.run(w)
            assert isinstance(info.value, SegzooError)
            assert re.search(case.match, str(info.value), re.S), str(info.value)
    finally:
        os.environ.pop("SEGZOO_MAX_IMAGE_PIXELS", None)
    after = snapshot(w)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"files changed or removed: {changed}"
    assert not (w / "o").exists() or not any((w / "o").iterdir()), "an output was written before the error"


def test_readme_lists_every_new_case():
    section = (REPO / "docs" / "reliability.md").read_text()  # the docs site's Reliability page
    missing = [c.id for c in CASES if f"`{c.id}`" not in section]
    assert not missing, f"README's reliability section lacks {missing}"


# -- files that cannot tear or mix -----------------------------------------------------------------------------

def _folder_state(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("fail_at", ["weights", "config", "card", "swap"])
def test_save_pretrained_interrupted_leaves_the_old_folder_whole(tmp_path, monkeypatch, fail_at):
    """A crash at any point of a save over an existing folder: the old folder, complete; no temporaries."""
    import segzoo.core.io
    import segzoo.storage.save as save_mod

    old = tiny_model(3)
    old.save_pretrained(str(tmp_path / "m"))
    (tmp_path / "m" / "notes.txt").write_text("mine")
    before = _folder_state(tmp_path / "m")

    class Crash(Exception):
        pass

    def crash(*args, **kwargs):
        raise Crash(fail_at)

    if fail_at == "weights":
        monkeypatch.setattr(save_mod, "write_weights", crash)
    elif fail_at == "config":
        monkeypatch.setattr(save_mod, "CONFIG_NAME", "config.json")
        original = Path.write_text
        monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: crash() if self.name == "config.json"
                            else original(self, *a, **k))
    elif fail_at == "card":
        monkeypatch.setattr(save_mod, "model_card", crash)
    else:  # the swap itself: neither the atomic exchange nor the renames happen
        monkeypatch.setattr(segzoo.core.io, "exchange_paths", crash)
    with pytest.raises(Crash):
        tiny_model(2).save_pretrained(str(tmp_path / "m"))
    assert _folder_state(tmp_path / "m") == before
    assert segzoo.from_pretrained(tmp_path / "m").num_classes == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"], "temporary files were left"


def test_save_pretrained_replaces_the_folder_as_a_whole_and_keeps_other_files(tmp_path):
    tiny_model(3).save_pretrained(str(tmp_path / "m"))
    (tmp_path / "m" / "notes.txt").write_text("mine")
    tiny_model(2).save_pretrained(str(tmp_path / "m"))
    loaded = segzoo.from_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert loaded.num_classes == config["model"]["num_classes"] == 2
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_concurrent_saves_into_one_folder_never_mix(tmp_path):
    """Writers take turns (an OS lock on the parent folder): after each round the folder is one writer's whole."""
    models = [tiny_model(n) for n in (2, 3, 4, 5)]
    errors: list[BaseException] = []

    def save(model):
        try:
            model.save_pretrained(str(tmp_path / "m"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    for _ in range(5):

        threads = [threading.Thread(target=save, args=(m,)) for m in models]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        loaded = segzoo.from_pretrained(tmp_path / "m")  # strict: weights and header of the same writer
        config = json.loads((tmp_path / "m" / "config.json").read_text())
        assert config["model"]["num_classes"] == loaded.num_classes
        assert f"## Classes ({loaded.num_classes})" in (tmp_path / "m" / "README.md").read_text()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_killed_writers_temporary_folder_is_removed_by_the_next_save(tmp_path):
    tiny_model(3).save_pretrained(str(tmp_path / "m"))
    (tmp_path / ".m.abc123.tmp").mkdir()  # what a writer killed mid-save leaves
    (tmp_path / ".m.abc123.tmp" / "model.safetensors").write_bytes(b"torn")
    tiny_model(2).save_pretrained(str(tmp_path / "m"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_full_disk_is_one_error_naming_the_path_and_keeps_the_old_files(tmp_path, monkeypatch):
    import segzoo.core.io

    tiny_model(3).save_pretrained(str(tmp_path / "m"))
    before = _folder_state(tmp_path / "m")
    original = Path.write_bytes

    def full(self, data):
        original(self, data[: len(data) // 2])  # half of it, as a full disk would
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(WriteError, match=r"cannot write '.*m': no space left on device"):
        tiny_model(2).save_pretrained(str(tmp_path / "m"))
    monkeypatch.setattr(Path, "write_bytes", original)
    assert _folder_state(tmp_path / "m") == before and sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert segzoo.core.io.write_error(tmp_path, OSError(errno.ENOENT, "x")).errno == errno.ENOENT  # others unchanged


def test_predict_writes_each_pair_whole_or_not_at_all(world, tmp_path, monkeypatch, capsys):
    """A failure while writing an image's overlay leaves neither of its two files, nor a temporary; a full disk
    is one line naming the file, and the command runs again afterwards."""
    from PIL import PngImagePlugin  # noqa: F401

    calls = {"n": 0}
    original = Image.Image.save

    def fail_second(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the first image's overlay
            original(self, fp, *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fp))
        return original(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", fail_second)
    status = main(["predict", str(world / "photos"), "-w", str(world / "good.safetensors"), "-o", str(tmp_path / "o"),
                   "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and "no space left on device" in err and "a_overlay.png" in err, err
    assert list((tmp_path / "o").iterdir()) == []
    monkeypatch.setattr(Image.Image, "save", original)
    assert main(["predict", str(world / "photos"), "-w", str(world / "good.safetensors"), "-o",
                 str(tmp_path / "o"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "a_overlay.png"]


def test_more_than_256_classes_are_written_as_16_bit_pngs(tmp_path):
    from segzoo.inference.predictor import class_id_image

    ids = np.array([[0, 255], [256, 260]])
    wide = class_id_image(ids, 300)
    wide.save(tmp_path / "ids.png")
    back = np.array(Image.open(tmp_path / "ids.png"))
    assert back.tolist() == [[0, 255], [256, 260]]  # 260 stays 260, not 4
    assert np.array(class_id_image(np.array([[3]]), 256)).dtype == np.uint8


def test_exif_rotation_is_one_rule_for_images_and_masks(tmp_path):
    """A square JPEG with Orientation=6 beside its PNG mask: both are read as stored, so they stay aligned."""
    from segzoo.data.masks import MaskDecoder, read_image

    pixels = np.zeros((40, 40, 3), np.uint8)
    pixels[:20] = 255  # the top half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    image.save(tmp_path / "a.jpg", exif=exif, quality=100)
    Image.fromarray((pixels[..., 0] > 0).astype(np.uint8)).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.jpg")
    mask = MaskDecoder(2)(tmp_path / "a.png")
    agree = ((img[..., 0] > 127) == (mask == 1)).mean()
    assert agree > 0.99, agree


def test_a_run_folder_is_locked_while_a_run_owns_it(world, tmp_path):
    recipe = Recipe.from_dict(recipe_dict(world / "shapes"))
    first = Trainer(recipe, tmp_path / "run")
    owner = rf"run folder '.*run' is in use by another process \(pid {os.getpid()}\)"
    with pytest.raises(InvalidValueError, match=owner):
        Trainer(recipe, tmp_path / "run")
    first.fit()  # the lock is released when the run ends
    second = Trainer(Recipe.from_dict(recipe_dict(world / "shapes")), tmp_path / "run", resume=True)
    second._lock.release()


def test_a_killed_runs_lock_dies_with_it(world, tmp_path):
    """The lock is an OS lock, not a file's existence: a lock file left by a dead process does not block."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".segzoo.lock").write_text("99999")
    trainer = Trainer(Recipe.from_dict(recipe_dict(world / "shapes")), tmp_path / "run")
    trainer._lock.release()


def test_resume_after_a_crash_mid_epoch_logs_each_epoch_once(world, tmp_path):
    recipe = Recipe.from_dict(recipe_dict(world / "shapes", epochs=2))
    Trainer(recipe, tmp_path / "run").fit()
    log = tmp_path / "run" / "metrics.jsonl"
    lines = log.read_text().splitlines()
    # the crash: epoch 2 was logged, but its checkpoint was never written (last/ still holds epoch 1)
    shutil.rmtree(tmp_path / "run" / "last")
    recipe1 = Recipe.from_dict(recipe_dict(world / "shapes", epochs=1))
    Trainer(recipe1, tmp_path / "one").fit()
    shutil.copytree(tmp_path / "one" / "last", tmp_path / "run" / "last")
    log.write_text("\n".join(lines) + '\n{"split": "train", "ep')  # and a line torn by the crash
    Trainer(Recipe.from_dict(recipe_dict(world / "shapes", epochs=2)), tmp_path / "run", resume=True).fit()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    epochs = [(r["split"], r["epoch"]) for r in records]
    assert epochs == [("train", 1), ("val", 1), ("train", 2), ("val", 2)], epochs


# -- downloads that cannot fill the disk --------------------------------------------------------------------------

class _Endless(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        if self.path.endswith("/announced"):
            self.send_header("Content-Length", str(10**12))
        self.end_headers()
        block = b"\0" * (1 << 16)
        try:
            for _ in range(10_000):  # ~650 MB if nobody stops reading
                self.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def endless_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path,size,limit_mb,match", [
    ("/endless", 62_000, None, r"more than the 62,000 bytes expected"),
    ("/endless", None, "1", r"more than the 1,048,576 bytes expected.*SEGZOO_MAX_DOWNLOAD_MB"),
    ("/announced", 62_000, None, r"announces 1,000,000,000,000 bytes"),
])
def test_downloads_are_bounded_and_leave_no_partial_file(endless_server, tmp_path, monkeypatch, path, size,
                                                         limit_mb, match):
    from segzoo.storage.specs import WeightSpec, resolve_spec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    if limit_mb:
        monkeypatch.setenv("SEGZOO_MAX_DOWNLOAD_MB", limit_mb)
    spec = WeightSpec("t", url=endless_server + path, sha256="0" * 64, size=size)
    with pytest.raises(DownloadError, match=match):
        resolve_spec("unet_r18", spec)
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "segzoo"
    assert not cache.exists() or not any(cache.rglob("*")), list(cache.rglob("*"))


def test_a_kill_between_folder_renames_still_loads_the_previous_checkpoint(world, tmp_path, monkeypatch):
    """Where no atomic exchange exists, the old checkpoint is set aside before the new one moves in; a crash
    between the two renames leaves it where load_checkpoint finds it."""
    import segzoo.core.io
    from segzoo.training.checkpoint import load_checkpoint, save_checkpoint

    model = tiny_model(3)
    save_checkpoint(tmp_path / "last", model, {"epoch": 1}, {})
    monkeypatch.setattr(segzoo.core.io, "exchange_paths", lambda a, b: False)
    real_replace = os.replace

    def crash_moving_new_in(src, dst):
        if Path(dst) == tmp_path / "last":
            raise KeyboardInterrupt  # the kill, after the old folder was set aside, before the new one moved in
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_moving_new_in)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "last", tiny_model(2), {"epoch": 2}, {})
    monkeypatch.setattr(os, "replace", real_replace)
    weights, state = load_checkpoint(tmp_path / "last")
    assert state["epoch"] == 1 and weights.config.num_classes == 3
    save_checkpoint(tmp_path / "last", tiny_model(4), {"epoch": 3}, {})  # the next save restores, then replaces
    weights, state = load_checkpoint(tmp_path / "last")
    assert state["epoch"] == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["last"]


# -- real kills --------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("what", ["save_pretrained", "predict"])
def test_sigkill_mid_write_leaves_old_or_new_never_torn(world, tmp_path, what):
    """Kill a real process with SIGKILL at random moments while it writes; the target is always whole."""
    import signal
    import subprocess
    import sys
    import time

    rng = np.random.default_rng(0)
    if what == "save_pretrained":
        tiny_model(3).save_pretrained(str(tmp_path / "m"))
        script = ("import segzoo\n"
                  "m = segzoo.create_model('unet', 'plain', 2, encoder_params={'widths': [32, 64, 128]}, "
                  "decoder_channels=[64, 32])\n"
                  f"while True:\n    m.save_pretrained({str(tmp_path / 'm')!r})\n")
    else:
        photos = tmp_path / "photos"
        photos.mkdir()
        for i in range(40):
            Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
        args = [str(photos), "-w", str(world / "good.safetensors"), "-o", str(tmp_path / "o"), "--overwrite", "--quiet"]
        script = f"from segzoo.cli import main\nwhile True:\n    main(['predict', *{args!r}])\n"
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3 + float(rng.uniform(0, 3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if what == "save_pretrained":
            loaded = segzoo.from_pretrained(tmp_path / "m")  # strict: one writer's weights and header
            config = json.loads((tmp_path / "m" / "config.json").read_text())
            assert config["model"]["num_classes"] == loaded.num_classes
        else:
            for png in (tmp_path / "o").glob("*.png"):
                Image.open(png).load()  # a truncated PNG fails here
            assert not list((tmp_path / "o").glob(".*.tmp"))


def test_a_full_disk_during_training_is_one_error_and_keeps_the_last_checkpoint(world, tmp_path, monkeypatch,
                                                                               capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(world / "shapes", epochs=2)))
    assert main(["train", str(recipe), "-o", str(tmp_path / "run"), "--set", "train.epochs=1"]) == 0
    before = _folder_state(tmp_path / "run" / "last")
    original = Path.write_bytes

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    capsys.readouterr()
    status = main(["train", str(recipe), "-o", str(tmp_path / "run"), "--resume"])
    err = capsys.readouterr().err
    monkeypatch.setattr(Path, "write_bytes", original)
    assert status == 2 and "no space left on device" in err and "run/last" in err and "Traceback" not in err, err
    assert _folder_state(tmp_path / "run" / "last") == before  # the epoch-1 checkpoint, whole
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".last")]


def test_a_models_meta_cannot_disagree_with_its_classes():
    model = tiny_model(3)
    with pytest.raises(InvalidValueError, match=r"11 class colours for a model with 3 classes"):
        model.meta = segzoo.ModelMeta(class_colours=[[0, 0, 0]] * 11)
    with pytest.raises(InvalidTypeError, match="ModelMeta"):
        model.meta = {"class_names": ["a"]}
