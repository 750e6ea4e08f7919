"""A tiny configuration of the benchmark suite, so that it never rots."""

from __future__ import annotations

import json

import pytest

from benchmarks import suite


def test_suite_smoke(tmp_path, monkeypatch):
    pytest.importorskip("segmentation_models_pytorch")
    import segzoo
    from benchmarks import pairs

    # tiny encoders keep this fast; the structure of the run is the real one
    monkeypatch.setitem(pairs.PAIRS, "unet_r34", pairs.Pair(
        "unet_r34", lambda: segzoo.create("unet_r34", encoder="test_resnet"),
        lambda: __import__("segmentation_models_pytorch").Unet("resnet18", encoder_weights=None, classes=1),
        "smp Unet('resnet18')"))
    code = suite.main(["--device", "cpu", "--pairs", "unet_r34", "--modes", "eager", "fast", "--size", "64", "64",
                       "--batch", "1", "--repeats", "1", "--iters", "1", "--output", str(tmp_path), "--tag", "smoke"])
    assert code == 0
    result = json.loads((tmp_path / "smoke.json").read_text())
    rows = result["rows"]
    assert {(r["side"], r["mode"]) for r in rows} == {
        ("segzoo", "eager"), ("peer", "eager"), ("segzoo", "fast"), ("segzoo", "train_fp32"), ("peer", "train_fp32")}
    assert all(r["images_per_s"] > 0 and r["flops"] > 0 and r["params"] > 0 for r in rows)
    assert result["versions"]["torch"] and result["settings"]["size"] == [64, 64]
    table = (tmp_path / "smoke.md").read_text()
    assert "| unet_r34 | eager |" in table and "ratio" in table
    assert (tmp_path / "smoke.png").stat().st_size > 1000


def test_unknown_pair_and_mode():
    with pytest.raises(KeyError, match="nope"):
        suite.run(["nope"], ["eager"], "cpu", (32, 32), 1)
    with pytest.raises(ValueError, match="warp"):
        suite.run(["unet_r34"], ["warp"], "cpu", (32, 32), 1)
