"""The Hugging Face Hub path, offline: a populated cache, a loopback server, push_to_hub's upload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import segzoo
from helpers.hub_server import COMMIT, HubServer
from segzoo.storage.format import write_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2).eval()
    path = write_weights(model, tmp_path_factory.mktemp("w") / "model.safetensors")
    return model, path


def _populate_cache(cache: Path, repo: str, ref: str, commit: str, data: bytes) -> None:
    """The layout huggingface_hub keeps: models--org--name/refs/<ref> -> snapshots/<commit>/<file>."""
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "model.safetensors").write_bytes(data)


def _assert_same(a, b):
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=0)


def test_populated_cache_local_files_only(tmp_path, weights):
    model, path = weights
    _populate_cache(tmp_path, "org/tiny", "main", "a" * 40, path.read_bytes())
    loaded = segzoo.from_pretrained("hf-hub:org/tiny", cache_dir=tmp_path, local_files_only=True)
    _assert_same(loaded, model)


def test_revision_is_honoured(tmp_path, weights):
    model, path = weights
    other = segzoo.create("unet_r18", encoder="test_resnet", num_classes=2)
    _populate_cache(tmp_path, "org/tiny", "main", "a" * 40, path.read_bytes())
    other_path = write_weights(other, tmp_path / "other.safetensors")
    _populate_cache(tmp_path, "org/tiny", "v2", "b" * 40, other_path.read_bytes())
    loaded = segzoo.from_pretrained("hf-hub:org/tiny", revision="v2", cache_dir=tmp_path, local_files_only=True)
    _assert_same(loaded, other)
    _assert_same(segzoo.from_pretrained("hf-hub:org/tiny", cache_dir=tmp_path, local_files_only=True), model)


def test_hf_hub_offline_read_at_call_time(tmp_path, weights, monkeypatch):
    import huggingface_hub  # noqa: F401  (already imported: the env var below is set after import)

    _, path = weights
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # would be refused if anything were fetched
    with pytest.raises(FileNotFoundError, match="offline"):
        segzoo.from_pretrained("hf-hub:org/absent", cache_dir=tmp_path)
    _populate_cache(tmp_path, "org/present", "main", "c" * 40, path.read_bytes())
    assert segzoo.from_pretrained("hf-hub:org/present", cache_dir=tmp_path) is not None


def test_download_from_loopback_endpoint_then_offline(tmp_path, weights, monkeypatch):
    model, path = weights
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with HubServer({("org/tiny", "model.safetensors"): path.read_bytes()}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)  # read at call time, after huggingface_hub's import
        loaded = segzoo.from_pretrained("hf-hub:org/tiny", cache_dir=tmp_path)
        assert any(method == "GET" and "org/tiny/resolve" in p for method, p in server.requests)
        with pytest.raises(FileNotFoundError, match="no model.safetensors"):
            segzoo.from_pretrained("hf-hub:org/other", cache_dir=tmp_path)
    _assert_same(loaded, model)
    assert (tmp_path / "models--org--tiny" / "snapshots" / COMMIT / "model.safetensors").exists()
    # the server is gone: the cached copy serves
    _assert_same(segzoo.from_pretrained("hf-hub:org/tiny", cache_dir=tmp_path, local_files_only=True), model)


def test_bad_hub_ids():
    with pytest.raises(ValueError, match="hf-hub:org/name"):
        segzoo.from_pretrained("hf-hub:just-a-name")


def test_push_to_hub_uploads_the_save_pretrained_layout(monkeypatch, weights):
    import huggingface_hub

    model, _ = weights
    calls = {}

    def create_repo(self, repo_id, private=None, exist_ok=False, **kw):
        calls["create"] = (repo_id, private, exist_ok)

    def upload_folder(self, *, repo_id, folder_path, revision=None, commit_message=None, **kw):
        folder = Path(folder_path)
        calls["files"] = sorted(p.name for p in folder.iterdir())
        calls["card"] = (folder / "README.md").read_text()
        calls["loaded"] = segzoo.from_pretrained(folder)
        return "https://hub.local/org/tiny/commit/1"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    url = model.push_to_hub("org/tiny", dataset="toy")
    assert url.endswith("/commit/1")
    assert calls["create"] == ("org/tiny", None, True)
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    assert 'segzoo.from_pretrained("hf-hub:org/tiny")' in calls["card"]
    _assert_same(calls["loaded"], model)
