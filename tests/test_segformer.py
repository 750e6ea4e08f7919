"""SegFormer in the core (MiT encoders, the all-MLP decoder, segformer_b0..b5) and the transformers importer: equal
parameter counts, logits equal to transformers' in both key layouts, class names and normalisation from the
configs, Hub repos converted once and cached, bad configs named."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import segzoo
from conftest import n_params
from helpers.hub_server import HubServer
from segzoo.convert import from_transformers
from segzoo.core.errors import InvalidValueError

transformers = pytest.importorskip("transformers", reason="transformers (dev extra) builds the reference SegFormer")
B0 = {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256}
B2 = {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768}


def reference(num_labels: int = 5, **config) -> torch.nn.Module:
    """transformers' SegFormer-B0 with random weights and random BatchNorm statistics (eval mode)."""
    torch.manual_seed(0)
    model = transformers.SegformerForSemanticSegmentation(
        transformers.SegformerConfig(**{**B0, **config}, num_labels=num_labels)).eval()
    bn = model.decode_head.batch_norm
    bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
    return model


def peer_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """transformers' logits upsampled as its post_process_semantic_segmentation does."""
    with torch.no_grad():
        return F.interpolate(model(pixel_values=x).logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def ours(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("name,reference_config,expected", [
    ("segformer_b0", B0, 3_752_694), ("segformer_b2", B2, 27_461_974)])
def test_parameter_counts_equal_transformers(name, reference_config, expected):
    peer = transformers.SegformerForSemanticSegmentation(
        transformers.SegformerConfig(**reference_config, num_labels=150))
    assert n_params(segzoo.create(name)) == n_params(peer) == expected


def test_logits_equal_transformers_in_memory_and_on_disk(tmp_path):
    peer = reference()
    assert any(k.startswith("segformer.stages.") for k in peer.state_dict())  # transformers 5's names in memory
    model = from_transformers(peer)
    for size in ((64, 64), (96, 160), (128, 96), (97, 131)):  # multiples of 32, and one that is not
        x = torch.randn(2, 3, *size)
        torch.testing.assert_close(ours(model, x), peer_logits(peer, x), atol=1e-4, rtol=1e-4)
    peer.save_pretrained(tmp_path / "saved")
    from safetensors.torch import load_file

    on_disk = load_file(str(tmp_path / "saved" / "model.safetensors"))
    assert any(k.startswith("segformer.encoder.block.0.0.attention.self.query") for k in on_disk)  # the Hub's names
    x = torch.randn(1, 3, 64, 96)
    for source in (tmp_path / "saved", on_disk, tmp_path / "saved" / "model.safetensors"):
        torch.testing.assert_close(ours(from_transformers(source), x), peer_logits(peer, x), atol=1e-4, rtol=1e-4)


def test_class_names_and_normalisation_come_from_the_configs(tmp_path):
    peer = reference(3, id2label={0: "sky", 1: "road", 2: "car"}, label2id={"sky": 0, "road": 1, "car": 2})
    peer.save_pretrained(tmp_path)
    processor = transformers.SegformerImageProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    processor.save_pretrained(tmp_path)
    model = from_transformers(tmp_path)
    assert model.meta.class_names == ["sky", "road", "car"]
    assert model.meta.preprocessing.mean == (0.5, 0.5, 0.5) and model.meta.preprocessing.std == (0.25, 0.25, 0.25)
    # predict normalises as transformers' processor does (without its resize): the same classes as the peer
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    normalised = (image.float() / 255 - 0.5) / 0.25
    assert torch.equal(model.predict(image), peer_logits(peer, normalised[None]).argmax(1)[0])


def test_saved_and_reloaded_as_segzoo_weights_and_by_the_command_line(tmp_path):
    from segzoo.cli import main

    peer = reference()
    model = from_transformers(peer)
    model.save_pretrained(str(tmp_path / "z"))
    again = segzoo.from_pretrained(tmp_path / "z")
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(ours(again, x), ours(model, x), rtol=0, atol=0)
    peer.save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "cli.safetensors"), "--from", "transformers"]) == 0
    torch.testing.assert_close(ours(segzoo.from_pretrained(tmp_path / "cli.safetensors"), x), peer_logits(peer, x),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("change,match", [
    ({"model_type": "beit"}, "model_type 'beit' is not converted"),
    ({"model_type": "upernet"}, "the UperNet importer converts ConvNeXt backbones, got None"),  # the plugin's
    ({"hidden_sizes": [32, 64, 160, 320]}, "no MiT variant"),
    ({"num_attention_heads": [1, 1, 1, 1]}, r"num_attention_heads is \[1, 1, 1, 1\]"),
    ({"hidden_sizes": "big"}, "lists of integers"),
    ({"id2label": {"0": "a"}}, "id2label must map each of the 5"),
    ({"id2label": ["a"] * 5}, "id2label must map each of the 5"),
    ({"num_channels": "3"}, "num_channels must be an integer, got '3'"),
    ({"decoder_hidden_size": 2.5}, "decoder_hidden_size must be an integer"),
    ({"classifier_dropout_prob": 5}, r"classifier_dropout_prob is 5, outside 0.0..1.0"),
    ({"classifier_dropout_prob": None}, "classifier_dropout_prob must be a number"),
    ({"num_labels": True}, "num_labels is True, but the classifier has 5"),
])
def test_configs_segzoo_cannot_build_are_named(tmp_path, change, match):
    reference().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(InvalidValueError, match=match):
        from_transformers(tmp_path)


@pytest.mark.parametrize("processor,match", [
    ({"image_mean": "x"}, "image_mean 'x'"), ({"image_std": [1, 2]}, "one mean and std per each of the 3"),
    ({"rescale_factor": 0}, "rescale_factor 0"), ({"image_mean": [0.5, None, 0.5]}, "must be numbers"),
])
def test_preprocessor_configs_segzoo_cannot_use_are_named(tmp_path, processor, match):
    reference().save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor))
    with pytest.raises(InvalidValueError, match=match):
        from_transformers(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": 0.5, "image_std": 0.25}))
    assert from_transformers(tmp_path).meta.preprocessing.std == (0.25, 0.25, 0.25)  # one value for all channels


def test_a_truncated_or_foreign_folder_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "segformer", ' * 3)
    with pytest.raises(InvalidValueError, match="not valid JSON"):
        from_transformers(tmp_path)
    with pytest.raises(InvalidValueError, match="no patch embedding"):
        from_transformers({"encoder.weight": torch.zeros(1)})


def test_hf_hub_transformers_repo_is_converted_once_and_cached(tmp_path, monkeypatch):
    peer = reference(3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    peer.save_pretrained(tmp_path / "snapshot")
    files = {("nvidia/segformer-test", name): (tmp_path / "snapshot" / name).read_bytes()
             for name in ("config.json", "model.safetensors")}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    x = torch.randn(1, 3, 64, 64)
    with HubServer(files) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        model = segzoo.from_pretrained("hf-hub:nvidia/segformer-test", cache_dir=tmp_path / "hf")
    torch.testing.assert_close(ours(model, x), peer_logits(peer, x), atol=1e-4, rtol=1e-4)
    assert model.meta.class_names == ["a", "b", "c"]
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "segzoo" / "hf-hub.nvidia--segformer-test.safetensors"
    record = json.loads((cached.parent / (cached.name + ".json")).read_text())
    assert record["source"] == "hf-hub:nvidia/segformer-test" and cached.is_file()
    # the server is gone: the converted file serves, offline
    again = segzoo.from_pretrained("hf-hub:nvidia/segformer-test", cache_dir=tmp_path / "hf", local_files_only=True)
    torch.testing.assert_close(ours(again, x), ours(model, x), rtol=0, atol=0)


@pytest.mark.parametrize("source", ["hf-hub:../evil", "hf-hub:org/na--me", "hf-hub:org/.."])
def test_hub_ids_are_checked_before_any_request(source):
    with pytest.raises(InvalidValueError, match="not a Hub repo id"):
        segzoo.from_pretrained(source)


def test_segformer_decoder_runs_on_any_encoder():
    model = segzoo.create_model("segformer", "test_resnet", 3, channels=16).train()
    x = torch.randn(2, 3, 97, 131, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 3, 97, 131) and model.decoder.output_reduction == 4
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mit_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="no dilated form"):
        segzoo.create("segformer_b0", output_stride=16)
    with pytest.raises(ValueError, match="no ImageNet weights are fetched"):
        segzoo.create("segformer_b0", encoder_weights="imagenet")
    with pytest.raises(ValueError, match="drop_path_rate must be in"):
        segzoo.create("segformer_b0", encoder_params={"drop_path_rate": 2})


@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
def test_segformer_exports_with_dynamic_sizes_and_parity(suffix, tmp_path):
    """Dynamic ONNX and torch.export programs, each checked against PyTorch at three other sizes. A program holds
    from the side where the first stage's reduced keys stay >= 2 per side (61 px; torch.export specialises 1s)."""
    model = segzoo.create("segformer_b0", num_classes=4).eval()
    report = segzoo.export(model, str(tmp_path / f"m{suffix}"), example_size=(64, 96))
    assert report["dynamic"] and len(report["checks"]) == 3
    assert all(c["max_abs_diff"] <= 1e-3 and c["argmax_agree"] == 1.0 for c in report["checks"])
    if suffix == ".pt2":
        assert report["min_side"] == model.encoder.program_min_side == 61


@pytest.mark.parametrize("name,kwargs", [("segformer_b0", {}), ("segformer_b0", {"encoder": "test_resnet"})])
def test_fast_path_folds_the_head_and_keeps_the_logits(name, kwargs):
    """segzoo.optimize swaps the SegFormer head for its folded form (one convolution per scale to the fused width,
    upsampled after it): the same logits up to rounding, with trained-looking BatchNorm statistics."""
    from segzoo.decoders.segformer import FoldedSegFormerDecoder, SegFormerDecoder

    model = segzoo.create(name, num_classes=6, **kwargs).eval()
    bn = model.decoder.fuse[1]
    bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0), bn.weight.data.uniform_(0.5, 1.5)
    fast = segzoo.optimize(model)
    assert isinstance(fast.model.decoder, FoldedSegFormerDecoder)
    assert isinstance(model.decoder, SegFormerDecoder)  # the model itself is untouched
    x = torch.randn(2, 3, 96, 131)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=1e-4)
