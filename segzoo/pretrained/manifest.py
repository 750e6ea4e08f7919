"""``weights/manifest.json``: every published file, checked against the files and the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segzoo.pretrained.format import sha256_of
from segzoo.pretrained.specs import WeightSpec, weights_dir

__all__ = ["MANIFEST_NAME", "read_manifest", "check_manifest", "manifest_entry"]

MANIFEST_NAME = "manifest.json"
ENTRY_KEYS = ("model", "tag", "file", "sha256", "size", "dataset", "metrics", "license", "command")
NOT_WEIGHTS = {MANIFEST_NAME, "README.md"}


def read_manifest(directory: Path | None = None) -> list[dict[str, Any]]:
    path = (directory or weights_dir()) / MANIFEST_NAME
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise ValueError(f"{str(path)!r}: expected {{'files': [...]}}")
    return data["files"]


def manifest_entry(model: str, tag: str, path: Path, **fields: Any) -> dict[str, Any]:
    """The manifest row of a weights file (sha256 and size read from the file)."""
    entry = {"model": model, "tag": tag, "file": path.name, "sha256": sha256_of(path), "size": path.stat().st_size}
    entry.update({k: fields.get(k) for k in ("dataset", "metrics", "license", "command")})
    return entry


def check_manifest(directory: Path | None = None, models: Any = None) -> list[str]:
    """Disagreements between the manifest, the files in ``directory`` and the registry's file specs."""
    from segzoo.registry import MODELS

    directory = directory or weights_dir()
    models = models if models is not None else MODELS
    problems: list[str] = []
    entries = read_manifest(directory)
    listed = {}
    for i, entry in enumerate(entries):
        missing = [k for k in ENTRY_KEYS if k not in entry]
        if missing:
            problems.append(f"manifest entry {i} lacks {missing}")
            continue
        listed[(entry["model"], entry["tag"])] = entry
        path = directory / entry["file"]
        if not path.is_file():
            problems.append(f"{entry['file']}: listed in the manifest but not in {str(directory)!r}")
            continue
        if path.stat().st_size != entry["size"]:
            problems.append(f"{entry['file']}: size {path.stat().st_size}, manifest says {entry['size']}")
        actual = sha256_of(path)
        if actual != entry["sha256"]:
            problems.append(f"{entry['file']}: sha256 {actual}, manifest says {entry['sha256']}")
    files = {e["file"] for e in entries if "file" in e}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name not in NOT_WEIGHTS and not path.name.endswith(".md") and path.name not in files:
            problems.append(f"{path.name}: in {str(directory)!r} but not in the manifest")
    specs: dict[tuple[str, str], WeightSpec] = {}
    for name in models.own_names():
        for tag, spec in (models.entry(name).metadata.get("weights") or {}).items():
            if spec.file:
                specs[(name, tag)] = spec
    for key, spec in specs.items():
        entry = listed.get(key)
        if entry is None:
            problems.append(f"{key[0]}.{key[1]}: registered with file {spec.file!r} but not in the manifest")
        elif entry["file"] != spec.file or entry["sha256"] != spec.sha256:
            problems.append(f"{key[0]}.{key[1]}: registry says {spec.file} {spec.sha256}, manifest {entry['file']} {entry['sha256']}")
    for key in listed.keys() - specs.keys():
        problems.append(f"{key[0]}.{key[1]}: in the manifest but no registered model publishes it")
    return problems
