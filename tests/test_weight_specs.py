"""Published weights: repository files, URL downloads into the cache, sha256 checks, unet_carvana, manifest."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

import segzoo
from conftest import REPO
from helpers.classic_unet import MilesialUNet
from helpers.hub_server import HubServer
from segzoo.core.errors import DownloadError
from segzoo.core.registry import MODELS, Registry, RegistryEntry
from segzoo.storage.format import write_weights
from segzoo.storage.manifest import check_manifest, manifest_entry
from segzoo.storage.specs import ChecksumError, WeightSpec, published

X = torch.randn(1, 3, 64, 64)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def out(model):
    with torch.no_grad():
        return model.eval()(X)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A private weights folder and torch.hub cache."""
    monkeypatch.setenv("SEGZOO_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "weights").mkdir()
    return tmp_path


@pytest.fixture
def tiny(isolated):
    """A model trained by nobody, saved as segzoo weights, and a helper registering it under a zoo name."""
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2).eval()
    path = write_weights(model, isolated / "src.safetensors")

    def register(monkeypatch, *specs):
        def config():
            return model.config

        entry = RegistryEntry("tiny_zoo", config, "segzoo", "tests", {"weights": published(*specs)})
        monkeypatch.setitem(MODELS._entries, "tiny_zoo", entry)

    return model, path, register


def test_repository_file_spec(tiny, monkeypatch, isolated):
    model, path, register = tiny
    (isolated / "weights" / "tiny.safetensors").write_bytes(path.read_bytes())
    register(monkeypatch, WeightSpec("toy", file="tiny.safetensors", sha256=sha(path)),
             WeightSpec("other", file="tiny.safetensors", sha256=sha(path)))
    torch.testing.assert_close(out(segzoo.create("tiny_zoo", pretrained=True)), out(model), rtol=0, atol=0)
    torch.testing.assert_close(out(segzoo.create("tiny_zoo", pretrained="other")), out(model), rtol=0, atol=0)
    assert segzoo.list_models("tiny_*", pretrained=True) == ["tiny_zoo"]
    assert segzoo.model_info("tiny_zoo")["pretrained_tags"] == ["other", "toy"]
    with pytest.raises(KeyError, match=r"unknown weights tag 'nope'.*\['other', 'toy'\]"):
        segzoo.create("tiny_zoo", pretrained="nope")
    with pytest.warns(UserWarning, match="head.weight"):
        assert segzoo.create("tiny_zoo", pretrained=True, num_classes=5).num_classes == 5


def test_repository_file_with_wrong_hash_is_refused(tiny, monkeypatch, isolated):
    _, path, register = tiny
    target = isolated / "weights" / "tiny.safetensors"
    target.write_bytes(path.read_bytes())
    register(monkeypatch, WeightSpec("toy", file="tiny.safetensors", sha256="0" * 64))
    with pytest.raises(ChecksumError) as err:
        segzoo.create("tiny_zoo", pretrained=True)
    assert sha(path) in str(err.value) and "0" * 64 in str(err.value)
    assert target.exists()  # a repository file is reported, never deleted


def test_url_download_cached_and_verified_on_every_load(tiny, monkeypatch, isolated):
    model, path, register = tiny
    source = isolated / "served.safetensors"
    source.write_bytes(path.read_bytes())
    register(monkeypatch, WeightSpec("toy", url=source.as_uri(), sha256=sha(path)))
    first = segzoo.create("tiny_zoo", pretrained=True)
    cached = isolated / "torch" / "hub" / "checkpoints" / "segzoo" / "tiny_zoo.toy.safetensors"
    assert cached.is_file()
    source.unlink()  # the second load must come from the cache
    torch.testing.assert_close(out(segzoo.create("tiny_zoo", pretrained=True)), out(first), rtol=0, atol=0)
    data = bytearray(cached.read_bytes())
    data[-1] ^= 0xFF  # corrupt the cached copy
    cached.write_bytes(bytes(data))
    bad = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ChecksumError) as err:
        segzoo.create("tiny_zoo", pretrained=True)
    assert bad in str(err.value) and sha(path) in str(err.value) and "removed" in str(err.value)
    assert not cached.exists()
    source.write_bytes(path.read_bytes())  # reachable again: re-downloaded
    torch.testing.assert_close(out(segzoo.create("tiny_zoo", pretrained=True)), out(model), rtol=0, atol=0)


def test_url_with_mismatched_hash_is_never_cached(tiny, monkeypatch, isolated):
    _, path, register = tiny
    register(monkeypatch, WeightSpec("toy", url=path.as_uri(), sha256="f" * 64))
    with pytest.raises(ChecksumError, match="f" * 64):
        segzoo.create("tiny_zoo", pretrained=True)
    cache = isolated / "torch" / "hub" / "checkpoints" / "segzoo"
    assert not any(p.suffix == ".safetensors" for p in cache.rglob("*"))


def test_stalled_server_is_a_download_error_not_a_hang(tiny, monkeypatch, isolated):
    import socket

    from segzoo.storage import specs

    _, path, register = tiny
    with socket.socket() as server:  # accepts the connection (the kernel's backlog), never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        register(monkeypatch, WeightSpec("toy", url=f"http://127.0.0.1:{server.getsockname()[1]}/w.safetensors",
                                         sha256=sha(path)))
        monkeypatch.setattr(specs, "DOWNLOAD_TIMEOUT_S", 0.5)
        with pytest.raises(DownloadError, match=r"could not download http://127\.0\.0\.1:.*timed out"):
            segzoo.create("tiny_zoo", pretrained=True)
    assert not any((isolated / "torch").rglob("*.safetensors"))


def test_spec_validation():
    with pytest.raises(ValueError, match="exactly one"):
        WeightSpec("t", file="a.safetensors", url="file:///a", sha256="0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        WeightSpec("t", url="https://example.invalid/w.safetensors")
    with pytest.raises(ValueError, match="duplicate"):
        published(WeightSpec("t", hub="a/b"), WeightSpec("t", hub="a/c"))


@pytest.fixture
def carvana(isolated, monkeypatch):
    """unet_carvana's published specs pointed at file:// copies of milesial-layout checkpoints."""
    ref = MilesialUNet(3, 2).eval()
    for bn in (m for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_var.uniform_(0.5, 1.5)
    checkpoint = dict(ref.state_dict(), mask_values=[0, 1])
    specs = MODELS.entry("unet_carvana").metadata["weights"]
    for tag in ("scale0.5", "scale1.0"):
        src = isolated / f"unet_carvana_{tag}_epoch2.pth"
        torch.save(checkpoint, src)
        monkeypatch.setitem(specs, tag, dataclasses.replace(specs[tag], url=src.as_uri()))
    return ref


def test_unet_carvana_original_weights_via_torch_hub(carvana, isolated):
    model = torch.hub.load(str(REPO), "unet_carvana", source="local", pretrained=True, scale=0.5)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        assert (carvana(x) - model(x)).abs().max() <= 1e-4
    cached = isolated / "torch" / "hub" / "checkpoints" / "segzoo" / "unet_carvana.scale0.5.safetensors"
    record = json.loads(Path(str(cached) + ".json").read_text())
    assert record["sha256"] == sha(cached) and record["source"].endswith("scale0.5_epoch2.pth")
    (isolated / "unet_carvana_scale0.5_epoch2.pth").unlink()  # later loads use the converted cache
    again = segzoo.create("unet_carvana", pretrained="scale0.5")
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    assert torch.hub.load(str(REPO), "unet_carvana", source="local", pretrained=True, scale=1.0) is not None
    with pytest.raises(ValueError, match="scale"):
        torch.hub.load(str(REPO), "unet_carvana", source="local", pretrained=True, scale=0.25)
    cached.write_bytes(cached.read_bytes()[:-4] + b"\0\0\0\0")  # tampered cache: refused and removed
    with pytest.raises(ChecksumError):
        segzoo.create("unet_carvana", pretrained=True)
    assert not cached.exists()


def test_every_form_gives_identical_outputs(tiny, monkeypatch, isolated):
    model, path, register = tiny
    folder = model.save_pretrained(isolated / "folder")
    (isolated / "weights" / "tiny.safetensors").write_bytes(path.read_bytes())
    register(monkeypatch, WeightSpec("toy", file="tiny.safetensors", sha256=sha(path)))
    forms = {"file": path, "folder": folder, "zoo name": "tiny_zoo.toy"}
    results = {k: out(segzoo.from_pretrained(v)) for k, v in forms.items()}
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with HubServer({("org/tiny", "model.safetensors"): path.read_bytes()}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        results["loopback hub"] = out(segzoo.from_pretrained("hf-hub:org/tiny", cache_dir=isolated / "hf"))
    results["hub cache"] = out(segzoo.from_pretrained("hf-hub:org/tiny", cache_dir=isolated / "hf",
                                                      local_files_only=True))
    for name, value in results.items():
        torch.testing.assert_close(value, out(model), rtol=0, atol=0, msg=name)


def test_repository_manifest_agrees_with_files_and_registry():
    assert check_manifest() == []


def test_recorded_int8_recipes_name_modules_of_their_models():
    """A manifest INT8 recipe's float-kept modules exist in its model (built on the meta device: nothing loaded)."""
    from segzoo.storage.manifest import read_manifest

    rows = [r for r in read_manifest() if r.get("int8")]
    assert rows, "the manifest records INT8 recipes for the weights benchmarks.int8_recipe measured"
    for row in rows:
        with torch.device("meta"):
            names = {n for n, _ in segzoo.create(row["model"], encoder_weights=None).named_modules()}
        for backend, recipe in row["int8"].items():
            missing = [m for m in recipe["keep_float"] if m not in names]
            assert not missing, f"{row['model']}.{row['tag']} {backend}: {missing} are not modules of the model"


def test_manifest_check_reports_disagreements(tmp_path):
    weights = tmp_path / "w"
    weights.mkdir()
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2)
    good = write_weights(model, weights / "good.safetensors")
    write_weights(model, weights / "stray.safetensors")
    entry = manifest_entry("m", "t", good, dataset="toy", license="CC0-1.0", command="segzoo train ...")
    ghost = dict(entry, tag="ghost", file="ghost.safetensors")
    wrong = dict(entry, tag="wrong", sha256="0" * 64)
    orphan = dict(entry, model="gone", tag="t")  # a row whose model is not registered
    (weights / "manifest.json").write_text(json.dumps({"files": [entry, ghost, wrong, orphan]}))
    registry = Registry("model", "segzoo.test.none")
    registry.add("m", lambda: None, weights=published(
        WeightSpec("t", file="good.safetensors", sha256=entry["sha256"]),
        WeightSpec("unlisted", file="good.safetensors", sha256=entry["sha256"]),
    ))
    problems = "\n".join(check_manifest(weights, registry))
    assert "ghost.safetensors: listed in the manifest but not" in problems
    assert "stray.safetensors: in" in problems
    assert "good.safetensors: sha256" in problems  # the 'wrong' row
    assert "m.unlisted: registered with file" in problems
    assert "gone.t: in the manifest but no registered model has that name" in problems


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server over a folder (127.0.0.1 only), for downloads by URL."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path / "served"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_torchvision_url_checked_against_the_hash_prefix_in_its_name(isolated, served, monkeypatch):
    """torch.hub's rule for download.pytorch.org files: the sha256 starts with the hex after the last '-'. A
    right prefix converts and caches (torchvision's VOC class names attached); a wrong one is refused, nothing
    kept."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    from conftest import randomize_bn
    from segzoo.models.named import VOC_CLASSES

    root, url = served
    ref = randomize_bn(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21))
    torch.save(ref.state_dict(), root / "tmp.pth")
    digest = sha(root / "tmp.pth")
    (root / "tmp.pth").rename(root / f"lraspp_mobilenet_v3_large-{digest[:8]}.pth")
    (root / "lraspp_mobilenet_v3_large-00000000.pth").write_bytes((root / f"lraspp_mobilenet_v3_large-"
                                                                   f"{digest[:8]}.pth").read_bytes())
    spec = dataclasses.replace(MODELS.entry("lraspp_mnv3").metadata["weights"]["coco_voc"],
                               url=f"{url}/lraspp_mobilenet_v3_large-{digest[:8]}.pth")
    bad = dataclasses.replace(spec, tag="bad", url=f"{url}/lraspp_mobilenet_v3_large-00000000.pth")
    entry = dataclasses.replace(MODELS.entry("lraspp_mnv3"), metadata={"weights": published(spec, bad)})
    monkeypatch.setitem(MODELS._entries, "lraspp_mnv3", entry)
    model = segzoo.create("lraspp_mnv3", pretrained="coco_voc")
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(X), ref(X)["out"], atol=1e-4, rtol=1e-4)
    assert tuple(model.meta.class_names) == VOC_CLASSES and "BSD-3-Clause" in model.meta.license
    with pytest.raises(ChecksumError, match="does not start with the '00000000'"):
        segzoo.create("lraspp_mnv3", pretrained="bad")
    cache = isolated / "torch" / "hub" / "checkpoints" / "segzoo"
    assert sorted(p.name for p in cache.iterdir()) == ["lraspp_mnv3.coco_voc.safetensors",
                                                      "lraspp_mnv3.coco_voc.safetensors.json"]
