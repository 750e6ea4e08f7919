"""Issue 43, classes 5-7: outputs under concurrency and odd paths, options that cannot take effect, and work that
would explode. Each is one SegzooError (exit status 2) before any work, naming the path or option."""

from __future__ import annotations

import multiprocessing
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import segzoo
from helpers.files import snapshot
from segzoo.cli import main
from segzoo.core.errors import InvalidValueError, NotAFolderError, OutputExistsError, SegzooError
from segzoo.core.io import atomic_paths, check_output


def tiny_model(num_classes: int = 3):
    return segzoo.create_model("unet", "plain", num_classes, encoder_params={"widths": [8, 16]},
                               decoder_channels=[8], upsampling="bilinear").eval()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("outputs")
    tiny_model().save_pretrained(root / "weights")
    (root / "images").mkdir()
    for i in range(3):
        Image.fromarray(np.full((24, 20, 3), 40 * i, np.uint8)).save(root / "images" / f"{i}.png")
    (root / "a-file").write_text("the user's file")
    (root / "recipe.yaml").write_text(yaml.safe_dump({
        "model": {"decoder": "unet", "encoder": "plain", "overrides": {"encoder_params": {"widths": [8, 16]}}},
        "data": {"root": str(root / "data"), "classes": ["a", "b"]}, "train": {"epochs": 1}}))
    (root / "a-folder").mkdir()
    (root / "a-folder" / "keep.txt").write_text("the user's folder")
    return root


# -- class 5: files and folders ------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["predict", "{w}/images", "-w", "{w}/weights", "-o", "{w}/a-file/out"], r"a-file' is a file, not a folder"),
    (["predict", "{w}/images", "-w", "{w}/weights", "-o", "{w}/a-file"], r"a-file' is a file; expected a folder"),
    (["export", "{w}/weights", "{w}/a-folder", "--overwrite"], r"a-folder' is a folder; expected a file name"),
    (["export", "{w}/weights", "{w}/a-file/m.onnx"], r"a-file' is a file, not a folder"),
    (["quantize", "{w}/weights", "{w}/a-folder", "--calibration", "{w}/images", "--overwrite"],
     r"a-folder' is a folder"),
    (["prune", "{w}/weights", "--flops", "0.5", "-o", "{w}/a-file", "--overwrite"], r"a-file' is a file"),
    (["eval", "-w", "{w}/weights", "--images", "{w}/images", "--masks", "{w}/images", "--output",
      "{w}/a-folder", "--overwrite"], r"a-folder' is a folder"),
    (["convert", "{w}/a-file", "{w}/a-file/out", "--from", "smp"], r"a-file' is a file, not a folder"),
    (["train", "{w}/recipe.yaml", "-o", "{w}/a-file/run"], r"a-file' is a file, not a folder"),
])
def test_odd_output_paths_are_one_error_before_any_work(argv, message, world, capsys):
    import re

    before = snapshot(world)
    assert main([a.replace("{w}", str(world)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert snapshot(world) == before


def test_check_output_rules(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    assert check_output(tmp_path / "new.onnx") == tmp_path / "new.onnx"
    assert check_output(tmp_path / "d", folder=True) == tmp_path / "d"
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        check_output(tmp_path / "f")
    check_output(tmp_path / "f", overwrite=True)
    with pytest.raises(InvalidValueError, match="is a folder"):
        check_output(tmp_path / "d", overwrite=True)
    with pytest.raises(NotAFolderError, match="'.*f' is a file, not a folder"):
        check_output(tmp_path / "f" / "deeper" / "x.png")


def _write_pair(args: tuple[str, str, bytes]) -> str:
    target, other, payload = args
    try:
        with atomic_paths([target, other], replace=False) as (a, b):
            Path(a).write_bytes(payload)
            Path(b).write_bytes(payload)
        return "wrote"
    except OutputExistsError:
        return "refused"


def test_writers_racing_for_one_name_never_replace_each_other(tmp_path):
    """The check at the write, not before predicting: of writers racing for one pair of names, one writes both
    files and every other is refused; no file mixes two writers and no temporary file is left."""
    jobs = [(str(tmp_path / "x.png"), str(tmp_path / "x_overlay.png"), bytes([i]) * 1000) for i in range(8)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_write_pair, jobs)
    assert results.count("wrote") == 1 and results.count("refused") == 7
    assert (tmp_path / "x.png").read_bytes() == (tmp_path / "x_overlay.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png", "x_overlay.png"]


def test_a_file_that_appears_while_predicting_is_kept(world, tmp_path, monkeypatch, capsys):
    """Another run writes 1.png after this run's existence check: this run stops with exit 2 at that file and
    leaves it as it was; the pair it had written before stays whole."""
    from segzoo.inference import predictor as files

    real = files.Predictor.class_ids

    def racing(self, image, **tiling):
        ids = real(self, image, **tiling)
        if not (tmp_path / "out" / "1.png").exists() and (tmp_path / "out" / "0.png").exists():
            (tmp_path / "out" / "1.png").write_bytes(b"the other run's file")
        return ids

    monkeypatch.setattr(files.Predictor, "class_ids", racing)
    assert main(["predict", str(world / "images"), "-w", str(world / "weights"), "-o", str(tmp_path / "out")]) == 2
    assert "appeared while predicting" in capsys.readouterr().err
    assert (tmp_path / "out" / "1.png").read_bytes() == b"the other run's file"
    assert not (tmp_path / "out" / "1_overlay.png").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "0_overlay.png", "1.png"]


# -- class 6: options that cannot take effect ----------------------------------------------------------------------
def test_an_opset_the_exporter_cannot_write_is_refused_and_nothing_is_left(world, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(world / "weights"), str(out), "--size", "32", "32", "--opset", "11"]) == 2
    err = capsys.readouterr().err
    assert "opset 11 was asked" in err and "Traceback (most recent call last):\n  File \"/" not in err.split(
        "segzoo export: error")[-1]
    assert list(tmp_path.iterdir()) == []
    assert main(["export", str(world / "weights"), str(out), "--size", "32", "32", "--opset", "99"]) == 2
    assert "opset must be an integer in 7.." in capsys.readouterr().err


def test_an_asked_opset_that_can_be_written_is(world, tmp_path):
    import onnx

    from segzoo.deploy import export_onnx

    export_onnx(segzoo.from_pretrained(world / "weights"), tmp_path / "m.onnx", example_size=(32, 32), opset=20)
    assert {o.version for o in onnx.load(str(tmp_path / "m.onnx")).opset_import if o.domain in ("", "ai.onnx")} \
        == {20}


def test_prune_refuses_calibration_images_its_criterion_ignores(world):
    pytest.importorskip("torch_pruning", reason="the compress extra is not installed")
    from segzoo.deploy import prune

    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(InvalidValueError, match="magnitude criterion would ignore them"):
        prune(tiny_model(), 0.5, criterion="magnitude", calibration=[image], example_size=(32, 32))


# -- class 7: bounds -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tile, overlap, ok", [(16, 0.99, False), (16, 0.9, False), (64, 0.85, False),
                                               (16, 0.8, True), (512, 0.5, True), (64, 0.83, True)])
def test_windows_that_recompute_each_pixel_too_often_are_refused(tile, overlap, ok):
    model = tiny_model()
    image = np.zeros((40, 40, 3), np.uint8)
    if ok:
        assert model.predict(image, tile=tile, overlap=overlap).shape == (40, 40)
    else:
        with pytest.raises(SegzooError, match=r"computes every pixel about \d+ times.*overlap of at most 0\.83"):
            model.predict(image, tile=tile, overlap=overlap)


def test_a_crop_far_above_the_images_is_said(tmp_path):
    from segzoo.training.trainer import warn_if_crop_dwarfs_images

    paths = []
    for i, side in enumerate((100, 120)):
        Image.fromarray(np.zeros((side, side, 3), np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    with pytest.warns(UserWarning, match=r"crop_size 1024 is more than 2x the largest side.*120 px.*73x the work"):
        warn_if_crop_dwarfs_images(1024, paths)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_crop_dwarfs_images(192, paths)


def test_predict_memory_rule_is_in_the_readme():
    """The documented bound is the benchmark's rule (benchmarks/predict_memory.py checks the measured slope)."""
    from benchmarks.predict_memory import documented_bytes_per_pixel

    readme = (Path(__file__).parent.parent / "docs" / "prediction.md").read_text()
    assert "about 5 bytes x (classes + 3) per pixel" in readme
    assert documented_bytes_per_pixel(6) == 45
    assert os.path.isfile(Path(__file__).parent.parent / "benchmarks" / "results" / "predict_memory_k6_xeon.json")
