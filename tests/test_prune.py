"""Structured pruning: tiny U-Net and DeepLabV3+ models prune to a FLOPs share, rebuild from their own file with
no pruning code, match the in-memory pruned model, export with parity, quantize, and fine-tune."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import segzoo
from segzoo.cli import main
from segzoo.deploy.prune import flops_of

pytest.importorskip("torch_pruning")

TINY = {
    "unet": lambda: segzoo.create_model("unet", "plain", 3, encoder_params={"widths": [16, 32, 32]},
                                        decoder_channels=[16, 16], upsampling="bilinear"),
    "deeplabv3plus": lambda: segzoo.create("deeplabv3plus_r50", encoder="test_resnet", num_classes=3,
                                           aux_head=True),
}


@pytest.fixture(scope="module", params=sorted(TINY))
def pruned(request):
    torch.manual_seed(0)
    model = TINY[request.param]().eval()
    return model, segzoo.prune(model, 0.6, example_size=(64, 64), round_to=1)


def test_pruned_to_the_flops_share_never_the_classes(pruned):
    model, small = pruned
    example = torch.randn(1, 3, 64, 64)
    kept = flops_of(small, example) / flops_of(model, example)
    assert 0.5 <= kept <= 0.6 and small.meta.pruning["kept_flops"] == pytest.approx(kept, abs=1e-3)
    assert small.config.pruned and small.num_classes == 3
    assert small.head.state_dict()[next(iter(small.head.state_dict()))].shape[0] == 3
    if small.aux_head is not None:
        assert small(torch.randn(1, 3, 40, 44)).shape == (1, 3, 40, 44)
        assert small.forward_heads(torch.randn(1, 3, 40, 44)).aux.shape[1] == 3
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_a_pruned_model_rebuilds_from_its_file_without_pruning_code(pruned, tmp_path, monkeypatch):
    _, small = pruned
    small.save_pretrained(str(tmp_path / "p"))
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # loading must not need it
    loaded = segzoo.from_pretrained(tmp_path / "p")
    assert loaded.config == small.config
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), small(x), rtol=0, atol=0)
    header = json.loads((tmp_path / "p" / "config.json").read_text())
    assert header["model"]["pruned"] == small.config.pruned and header["pruning"]["criterion"] == "magnitude"
    # pruned in memory: no parent file to name
    assert "- Structurally pruned: magnitude ranking, scope model" in (tmp_path / "p" / "README.md").read_text()


def test_a_pruned_model_exports_with_parity_and_quantizes(pruned, tmp_path):
    pytest.importorskip("onnxruntime")
    import warnings

    _, small = pruned
    if small.aux_head is not None:  # the DeepLabV3+: its export parity (quantize exports the U-Net again below)
        report = segzoo.export(small, str(tmp_path / "p.onnx"), example_size=(64, 64))
        assert all(c["max_abs_diff"] <= 1e-3 and c["argmax_agree"] == 1.0 for c in report["checks"])
        return
    images = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # INT8 may not be faster on a tiny model
        q = segzoo.quantize(small, images, example_size=(64, 64))
    assert q.predict(images[0]).shape == (64, 64)
    assert all(c["max_abs_diff"] <= 1e-3 for c in q.report["fp32_export_checks"])  # its fp32 export had parity


def test_taylor_criterion_uses_calibration_images_and_differs_from_magnitude():
    torch.manual_seed(0)
    model = TINY["unet"]().eval()
    images = [np.random.default_rng(i).integers(0, 256, (48, 48, 3), dtype=np.uint8) for i in range(3)]
    taylor = segzoo.prune(model, 0.6, criterion="taylor", calibration=images, example_size=(64, 64), round_to=1)
    magnitude = segzoo.prune(model, 0.6, example_size=(64, 64), round_to=1)
    assert taylor.meta.pruning["criterion"] == "taylor"
    chosen = [not torch.equal(a, b) if a.shape == b.shape else True
              for a, b in zip(taylor.state_dict().values(), magnitude.state_dict().values())]
    assert any(chosen)
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())  # the original is untouched


@pytest.mark.parametrize("kwargs,match", [
    ({"flops": 1.5}, r"share of FLOPs to keep, in \(0, 1\)"),
    ({"flops": 0.5, "criterion": "taylor"}, "needs calibration images"),
    ({"flops": 0.5, "criterion": "random"}, "criterion must be one of"),
    ({"flops": 0.5, "scope": "encoder"}, "scope must be one of"),
    ({"flops": 0.5, "round_to": 0}, "round_to is the channel multiple"),
    ({"flops": 0.05, "scope": "decoder", "example_size": (64, 64), "round_to": 1}, "with scope 'decoder'"),
])
def test_bad_pruning_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        segzoo.prune(TINY["unet"](), **kwargs)


def test_decoder_scope_leaves_the_encoder_whole():
    torch.manual_seed(0)
    model = TINY["deeplabv3plus"]().eval()
    small = segzoo.prune(model, 0.7, scope="decoder", example_size=(64, 64), round_to=1)
    before, after = model.state_dict(), small.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # the encoder is kept but for its deepest feature's channels (test_resnet's layer4), coupled to the ASPP
    earlier = [k for k in before if k.startswith("encoder.") and not k.startswith("encoder.model.layer4.")]
    assert earlier and not changed & set(earlier)
    assert any(before[k].shape != after[k].shape for k in before if k.startswith("decoder."))
    assert small.meta.pruning["scope"] == "decoder" and small.meta.pruning["kept_flops"] <= 0.7
    x = torch.randn(1, 3, 48, 56)
    with torch.no_grad():
        assert small(x).shape == (1, 3, 48, 56)


def test_an_already_pruned_model_is_refused(pruned):
    with pytest.raises(ValueError, match="already pruned"):
        segzoo.prune(pruned[1], 0.5)


def test_cli_prunes_and_the_result_fine_tunes_with_init(tmp_path, capsys):
    from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset

    model = segzoo.create_model("unet", "plain", 4, encoder_params={"widths": [16, 32, 32]}, decoder_channels=[16, 16],
                                upsampling="bilinear")
    model.save_pretrained(str(tmp_path / "full"), class_names=SHAPE_CLASSES)
    assert main(["prune", str(tmp_path / "full"), "--flops", "0.5", "-o", str(tmp_path / "small"),
                 "--size", "64", "64"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kept_flops"] <= 0.5 and report["parameters"]["after"] < report["parameters"]["before"]
    assert main(["prune", str(tmp_path / "full"), "--flops", "0.5", "-o", str(tmp_path / "small")]) == 2
    data = write_shapes_dataset(tmp_path / "data", n_images=8, size=32, seed=1)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({
        "model": {"pretrained": str(tmp_path / "small")},
        "data": {"root": str(data), "classes": SHAPE_CLASSES, "val_fraction": 0.25}, "augment": {"crop_size": 32},
        "train": {"epochs": 1, "batch_size": 2, "progress": False, "plots": False}}))
    assert main(["train", str(recipe), "-o", str(tmp_path / "ft")]) == 0
    tuned = segzoo.from_pretrained(tmp_path / "ft" / "best")
    small = segzoo.from_pretrained(tmp_path / "small")
    assert tuned.config.pruned == small.config.pruned
    # the fine-tune's parent is the pruned file; its pruning record still names the unpruned model
    assert tuned.meta.parent["sha256"] == small.loaded_from["sha256"]
    assert tuned.meta.pruning["kept_flops"] == report["kept_flops"]
    assert tuned.meta.pruning["parent"]["source"] == str(tmp_path / "full")
    from segzoo.storage.save import lineage

    pruned_from, tuned_from = lineage(tuned.meta)
    assert pruned_from.startswith("Structurally pruned from `" + str(tmp_path / "full"))
    assert tuned_from.startswith("Fine-tuned from `")
    assert "\n- " + tuned_from in (tmp_path / "ft" / "best" / "README.md").read_text()  # the same words


def test_pruning_a_distilled_file_moves_its_teacher_to_the_ancestry(tmp_path):
    """The pruned file was not distilled itself: the teacher of the file it was pruned from is an earlier stage."""
    from segzoo.core.io import sha256_of
    from segzoo.storage.save import lineage

    model = TINY["unet"]().eval()
    model.meta.parent = {"source": "start.safetensors", "sha256": "a" * 64}
    model.meta.teacher = {"source": "big.safetensors", "sha256": "b" * 64, "loss": "kl"}
    model.save_pretrained(str(tmp_path / "kd"))
    small = segzoo.prune(segzoo.from_pretrained(tmp_path / "kd"), 0.6, example_size=(64, 64))
    digest = sha256_of(tmp_path / "kd" / "model.safetensors")
    assert small.meta.teacher is None and small.meta.parent == {"source": str(tmp_path / "kd"), "sha256": digest}
    assert small.meta.ancestry == [{"source": str(tmp_path / "kd"), "sha256": digest, "parent": "start.safetensors",
                                    "parent_sha256": "a" * 64, "teacher": "big.safetensors",
                                    "teacher_sha256": "b" * 64}]
    assert lineage(small.meta)[-1] == (f"Earlier, `{tmp_path / 'kd'}` (sha256 `{digest}`) was fine-tuned from "
                                       f"`start.safetensors` (sha256 `{'a' * 64}`) and distilled from the teacher "
                                       f"`big.safetensors` (sha256 `{'b' * 64}`).")
