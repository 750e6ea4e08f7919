"""The Hugging Face Hub: download (honouring offline settings read at call time) and upload."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from segzoo.core.config import DescribedModel
from segzoo.core.errors import DownloadError, MissingFileError
from segzoo.core.io import env_flag
from segzoo.storage.save import WEIGHTS_NAME, save_pretrained

__all__ = [
    "TRANSFORMERS_WEIGHTS", "download_file", "download_weights", "repo_config", "download_transformers_snapshot",
    "push_to_hub", "offline_from_env",
]

# the weights file names of a transformers repo or folder, in the order they are looked for
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def offline_from_env() -> bool:
    """``HF_HUB_OFFLINE`` as it is now (huggingface_hub itself reads it once, at import)."""
    return env_flag("HF_HUB_OFFLINE")


def download_file(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
) -> Path:
    """File ``filename`` of Hub repo ``repo_id`` through huggingface_hub's cache.

    ``local_files_only`` None follows ``HF_HUB_OFFLINE``; ``HF_ENDPOINT`` is also read
    at call time, so both can be changed after import.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if local_files_only is None:
        local_files_only = offline_from_env()
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
            local_files_only=local_files_only,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            library_name="segzoo",
        )
    except LocalEntryNotFoundError as exc:
        mode = "offline (local_files_only / HF_HUB_OFFLINE)" if local_files_only else "and the Hub was unreachable"
        raise MissingFileError(
            f"hf-hub:{repo_id} (revision {revision or 'main'}): {filename} is not in the cache "
            f"{str(cache_dir) if cache_dir else '(default)'} {mode}: {exc}"
        ) from exc
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise MissingFileError(f"hf-hub:{repo_id} (revision {revision or 'main'}) has no {filename}: "
                               f"{exc}") from exc
    except OSError as exc:  # network failures (requests/httpx errors are OSErrors)
        raise DownloadError(
            f"hf-hub:{repo_id}: could not download {filename} ({type(exc).__name__}: {exc}); check the network "
            "or HF_ENDPOINT, or load offline from a cache that holds it (local_files_only=True)"
        ) from exc
    return Path(path)


def download_weights(repo_id: str, **kwargs: Any) -> Path:
    """``model.safetensors`` of a segzoo repo on the Hub (keywords as :func:`download_file`)."""
    return download_file(repo_id, WEIGHTS_NAME, **kwargs)


def repo_config(repo_id: str, **kwargs: Any) -> dict[str, Any] | None:
    """The ``config.json`` of a Hub repo (keywords as :func:`download_file`), or None where it has none or it
    cannot be had: what tells a transformers repo (``model_type``) from a segzoo one."""
    from segzoo.core.io import read_json_file

    try:
        path = download_file(repo_id, "config.json", **kwargs)
    except (MissingFileError, DownloadError):
        return None
    return read_json_file(path, f"hf-hub:{repo_id} config")


def download_transformers_snapshot(repo_id: str, weights: tuple[str, ...], **kwargs: Any) -> Path:
    """The folder (a snapshot in huggingface_hub's cache) holding a transformers repo's ``config.json``, its
    ``preprocessor_config.json`` where it has one, and the first of ``weights`` it has."""
    config = download_file(repo_id, "config.json", **kwargs)
    with contextlib.suppress(MissingFileError):
        download_file(repo_id, "preprocessor_config.json", **kwargs)
    for i, name in enumerate(weights):
        try:
            download_file(repo_id, name, **kwargs)
            break
        except MissingFileError:
            if i == len(weights) - 1:
                raise
    return config.parent


def push_to_hub(
    model: DescribedModel,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload segzoo model",
    **meta: Any,
) -> str:
    """Save ``model`` in the ``save_pretrained`` layout and upload it; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, repo_id=repo_id, **meta)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=tmp, revision=revision, commit_message=commit_message
        )
    return str(getattr(info, "commit_url", info))
