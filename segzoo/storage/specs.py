"""Published weights of named models and how they are fetched, cached and verified.

A :class:`WeightSpec` names one tag of a named model and where its file lives:
``file`` (in the repository's ``weights/`` folder, so torch.hub's repository
archive carries it), ``url`` (downloaded into torch.hub's cache) or ``hub``
(a Hugging Face Hub repo). Every file is checked against its sha256 on download
and on every load from the cache; a mismatch is reported with both hashes, the
cached file is removed and nothing is loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segzoo.core.errors import (
    DownloadError,
    InvalidValueError,
    MissingFileError,
    UnknownNameError,
)
from segzoo.core.io import atomic_path, read_json_file, sha256_of
from segzoo.core.specs import WeightSpec, published, url_hash_prefix
from segzoo.storage.manifest import manifest_specs, weights_dir

__all__ = [
    "ChecksumError",
    "WeightSpec",
    "cache_dir",
    "declared_table",
    "published",
    "resolve_spec",
    "spec_for",
    "specs_of",
]


class ChecksumError(InvalidValueError):
    """A weights file whose sha256 is not the published one."""


def cache_dir() -> Path:
    """Where downloaded and converted weights are kept: torch.hub's cache (``$TORCH_HOME``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / "segzoo"


def specs_of(name: str) -> dict[str, WeightSpec]:
    """The published tags of the named model ``name``, the default first: those its registration declares
    (``register_model(..., weights=published(...))``, e.g. URLs of foreign checkpoints), then the files the
    manifest lists for it (read now, not when the model was registered)."""
    from segzoo.core.registry import MODELS

    declared = dict(MODELS.entry(name).metadata.get("weights") or {})
    return {**declared, **{tag: spec for tag, spec in manifest_specs(name).items() if tag not in declared}}


def spec_for(name: str, tag: str | None) -> WeightSpec:
    """The spec of ``name.tag``; ``tag`` None is the default (first) tag."""
    specs = specs_of(name)
    if not specs:
        raise InvalidValueError(
            f"no pretrained weights are published for {name!r}; use pretrained=False, or "
            "encoder_weights=<local file> for a pretrained backbone"
        )
    if tag is None:
        return next(iter(specs.values()))
    if tag not in specs:
        raise UnknownNameError(f"unknown weights tag {tag!r} for {name!r}; available tags: {sorted(specs)}")
    return specs[tag]


def _verify(path: Path, expected: str, what: str, remove: bool) -> None:
    actual = sha256_of(path)
    if actual != expected:
        if remove:
            path.unlink(missing_ok=True)
            Path(str(path) + ".json").unlink(missing_ok=True)
        raise ChecksumError(
            f"{what} {str(path)!r} has sha256 {actual}, expected {expected}"
            + ("; the file was removed from the cache, load again to re-download" if remove else "")
        )


DOWNLOAD_TIMEOUT_S = 60.0  # per connect and per read: a stalled server is an error, not a hang
DOWNLOAD_LIMIT_ENV = "SEGZOO_MAX_DOWNLOAD_MB"
DEFAULT_DOWNLOAD_LIMIT = 2 << 30  # bytes, for a download whose size the spec does not pin


def download_limit() -> int:
    """The most bytes a download whose size is not known may take (``$SEGZOO_MAX_DOWNLOAD_MB``, default 2 GiB)."""
    text = os.environ.get(DOWNLOAD_LIMIT_ENV, "").strip()
    if not text:
        return DEFAULT_DOWNLOAD_LIMIT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise InvalidValueError(f"${DOWNLOAD_LIMIT_ENV} must be a positive number of megabytes, got {text!r}")
    return int(value * (1 << 20))


def _download(url: str, dst: Path, size: int | None = None) -> None:
    """Stream ``url`` into ``dst``, at most ``size`` bytes (the spec's) or :func:`download_limit`: an endless or
    oversized body is an error, never a full disk (the caller removes the partial file)."""
    from urllib.request import Request, urlopen

    limit = size if size is not None else download_limit()
    request = Request(url, headers={"User-Agent": "segzoo"})
    with urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, open(dst, "wb") as out:
        announced = response.headers.get("Content-Length")
        if announced is not None and announced.isdigit() and int(announced) > limit:
            raise DownloadError(f"{url} announces {int(announced):,} bytes, more than the {limit:,} expected"
                                + ("" if size is not None else f" (${DOWNLOAD_LIMIT_ENV})"))
        done = 0
        while True:
            block = response.read(1 << 20)
            if not block:
                break
            done += len(block)
            if done > limit:
                raise DownloadError(f"{url} sent more than the {limit:,} bytes expected; stopped and removed the "
                                    "partial file" + ("" if size is not None else f" (${DOWNLOAD_LIMIT_ENV})"))
            out.write(block)


def resolve_spec(
    name: str, spec: WeightSpec, *, converter: Callable[[Path, Path], None] | None = None, **hub_kwargs: Any
) -> Path:
    """A verified local segzoo weights file for ``spec``, downloading and converting on first use."""
    if spec.file:
        path = weights_dir() / spec.file
        if not path.is_file():
            raise MissingFileError(
                f"weights {name}.{spec.tag} ship as {spec.file!r} in the repository's weights/ folder, "
                f"not found at {str(path)!r} (install from a git checkout or torch.hub, or set SEGZOO_WEIGHTS_DIR)"
            )
        _verify(path, spec.sha256, f"weights {name}.{spec.tag}", remove=False)
        return path
    if spec.hub and not spec.convert:
        from segzoo.storage.hub import download_weights

        return download_weights(spec.hub, **hub_kwargs)

    cached = cache_dir() / f"{name}.{spec.tag}.safetensors"
    record = Path(str(cached) + ".json")  # what was downloaded, and the sha256 of the cached file
    if cached.is_file():
        if spec.convert is None:
            _verify(cached, spec.sha256, f"cached weights {name}.{spec.tag}", remove=True)
            return cached
        if record.is_file():
            expected = read_json_file(record, "download record", 1 << 16).get("sha256", "")
            if not isinstance(expected, str):
                raise InvalidValueError(f"download record {str(record)!r}: sha256 must be a string, got {expected!r}")
            _verify(cached, expected, f"cached weights {name}.{spec.tag}", remove=True)
            return cached
        cached.unlink()  # a converted file without its record cannot be verified: fetch again
    cached.parent.mkdir(parents=True, exist_ok=True)
    if spec.hub:  # a transformers repo: its snapshot folder, converted
        from segzoo.storage.hub import TRANSFORMERS_WEIGHTS, download_transformers_snapshot

        folder = download_transformers_snapshot(spec.hub, TRANSFORMERS_WEIGHTS, **hub_kwargs)
        weights = next(folder / n for n in TRANSFORMERS_WEIGHTS if (folder / n).is_file())
        return _convert(name, spec, converter, folder, cached, f"hf-hub:{spec.hub}", weights)
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        download = Path(tmp) / Path(spec.url).name
        try:
            _download(spec.url, download, spec.size)
        except DownloadError:
            raise
        except OSError as exc:  # URLError, HTTPError, timeouts, refused connections
            raise DownloadError(
                f"weights {name}.{spec.tag}: could not download {spec.url} ({type(exc).__name__}: "
                f"{getattr(exc, 'reason', exc)}); this needs the network once, after which the file is kept in "
                f"{str(cache_dir())!r} and loads offline"
            ) from exc
        if spec.sha256:
            _verify(download, spec.sha256, f"download {spec.url}", remove=True)
        else:
            _verify_prefix(download, spec.url)
        if spec.convert is None:
            with atomic_path(cached) as tmp_cached:
                shutil.copyfile(download, tmp_cached)
            return cached
        return _convert(name, spec, converter, download, cached, spec.url, download)


def _verify_prefix(path: Path, url: str) -> None:
    """torch.hub's rule: a file name carrying a sha256 prefix must match the file's sha256."""
    prefix = url_hash_prefix(url)
    if prefix is not None:
        actual = sha256_of(path)
        if not actual.startswith(prefix):
            raise ChecksumError(f"download {url} has sha256 {actual}, which does not start with the {prefix!r} its "
                                "file name carries; nothing was kept")


def _convert(name: str, spec: WeightSpec, converter: Callable[[Path, Path], None] | None, source: Path,
             cached: Path, origin: str, original: Path) -> Path:
    """Convert a downloaded checkpoint into the cached segzoo file, with the record that verifies it later."""
    if converter is None:
        raise InvalidValueError(f"weights {name}.{spec.tag} need the {spec.convert!r} importer")
    converter(source, cached)
    record = Path(str(cached) + ".json")
    info = {"sha256": sha256_of(cached), "source": origin, "source_sha256": sha256_of(original)}
    with atomic_path(record) as tmp_record:
        tmp_record.write_text(json.dumps(info, indent=2) + "\n")
    return cached


def _source_of_spec(spec: WeightSpec) -> str:
    if spec.hub:
        return f"hf-hub:{spec.hub}"
    if spec.url:
        return spec.url
    return f"weights/{spec.file}"


def declared_table(pattern: str = "*") -> str:
    """The weights that named models declare (published elsewhere: URLs and Hub repos, converted on first use),
    one markdown row a tag: where from, the data, the metric its authors report, and the licence, in full, so
    that it is read before anything is downloaded."""
    import fnmatch

    from segzoo.core.registry import CORE_SOURCE, MODELS

    lines = ["| weights | source | dataset | reported | licence |", "|---|---|---|---|---|"]
    for entry in MODELS.registered():
        if entry.source != CORE_SOURCE:
            continue
        for tag, spec in (entry.metadata.get("weights") or {}).items():
            if not fnmatch.fnmatchcase(f"{entry.name}.{tag}", pattern):
                continue
            metrics = ", ".join(f"{k} {v:.1f}" for k, v in spec.metrics.items()) or "-"
            lines.append(f"| `{entry.name}.{tag}` | {_source_of_spec(spec)} | {spec.dataset or '-'} | {metrics} "
                         f"| {spec.license or '-'} |")
    return "\n".join(lines)
