"""``weights/manifest.json``: every published file, checked against the files and the registry."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from segzoo.core.errors import InvalidTypeError, InvalidValueError
from segzoo.core.io import atomic_path, sha256_of
from segzoo.core.specs import WeightSpec

__all__ = [
    "weights_dir",
    "MANIFEST_NAME", "read_manifest", "check_manifest", "manifest_entry", "manifest_specs", "update_manifest",
    "zoo_table", "update_readme_table", "README_START", "README_END", "INT8_BACKENDS", "INT8_RECIPE_KEYS", "NO_VNNI",
]

MANIFEST_NAME = "manifest.json"
ENTRY_KEYS = ("model", "tag", "file", "sha256", "size", "dataset", "metrics", "license", "command")
EXTRA_KEYS = ("params", "image_size", "cpu_latency_ms", "train_minutes", "storage", "check", "recipe", "int8")
INT8_BACKENDS = ("onnxruntime", "openvino")
# the keys of a row's "int8" recipes: a backend's, and onnxruntime's on CPUs without VNNI (7-bit weights there)
NO_VNNI = "onnxruntime-no-vnni"
INT8_RECIPE_KEYS = (*INT8_BACKENDS, NO_VNNI)
WEIGHT_SUFFIX = ".safetensors"
README_START = "<!-- model-zoo table: generated from weights/manifest.json by segzoo publish; do not edit -->"
README_END = "<!-- end of model-zoo table -->"


def weights_dir() -> Path:
    """The repository's ``weights/`` folder, where the manifest and the zoo's own files live
    (``$SEGZOO_WEIGHTS_DIR`` overrides)."""
    env = os.environ.get("SEGZOO_WEIGHTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "weights"


def read_manifest(directory: Path | None = None) -> list[dict[str, Any]]:
    path = (directory or weights_dir()) / MANIFEST_NAME
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidValueError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise InvalidValueError(f"{str(path)!r}: expected {{'files': [...]}}")
    return data["files"]


def manifest_entry(model: str, tag: str, path: Path, **fields: Any) -> dict[str, Any]:
    """The manifest row of a weights file (sha256 and size read from the file)."""
    unknown = sorted(set(fields) - set(ENTRY_KEYS) - set(EXTRA_KEYS))
    if unknown:
        raise InvalidTypeError(f"manifest_entry: unknown field(s) {unknown}; fields: {ENTRY_KEYS + EXTRA_KEYS}")
    entry = {"model": model, "tag": tag, "file": path.name, "sha256": sha256_of(path), "size": path.stat().st_size}
    entry.update({k: fields.get(k) for k in ENTRY_KEYS[5:] + EXTRA_KEYS if k in fields or k in ENTRY_KEYS})
    return entry


def update_manifest(entry: dict[str, Any], directory: Path | None = None) -> Path:
    """Add ``entry`` to the manifest in ``directory`` (replacing the row of the same model and tag), atomically."""
    directory = directory or weights_dir()
    rows = [e for e in read_manifest(directory) if (e.get("model"), e.get("tag")) != (entry["model"], entry["tag"])]
    rows.append(entry)
    rows.sort(key=lambda e: (e["model"], e["tag"]))
    with atomic_path(directory / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps({"files": rows}, indent=2) + "\n")
    return directory / MANIFEST_NAME


def manifest_specs(model: str, directory: Path | None = None) -> dict[str, WeightSpec]:
    """The published tags of ``model`` as weight specs, read from the manifest: the manifest is the one place
    a published file's sha256 is written."""
    specs = {}
    for entry in read_manifest(directory):
        if entry.get("model") == model:
            metrics = entry.get("metrics") or {}
            specs[entry["tag"]] = WeightSpec(
                entry["tag"], file=entry["file"], sha256=entry["sha256"], size=entry.get("size"),
                dataset=entry.get("dataset"),
                license=entry.get("license"),
                metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float)) and "/" not in k},
                description=f"trained by segzoo on {entry.get('dataset')}",
            )
    return specs


def zoo_table(entries: list[dict[str, Any]] | None = None) -> str:
    """The README's model-zoo table (markdown), one row per published file."""
    entries = read_manifest() if entries is None else entries
    lines = [
        "| weights | dataset | val metric | params | file | CPU latency | training | licence |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        m = e.get("metrics") or {}
        metric = f"{m['headline']} {m['value'] * 100:.1f}" if "headline" in m else "-"
        size = e.get("image_size")
        latency = f"{e['cpu_latency_ms']:.0f} ms @ {size[0]}x{size[1]}" if e.get("cpu_latency_ms") and size else "-"
        params = f"{e['params'] / 1e6:.1f} M" if e.get("params") else "-"
        minutes = f"{e['train_minutes']:.0f} min" if e.get("train_minutes") else "-"
        lines.append(
            f"| `{e['model']}.{e['tag']}` | {re.split(r' [(]|, ', str(e.get('dataset') or '-'))[0]} | {metric} "
            f"| {params} "
            f"| {e['size'] / 2**20:.1f} MiB ({e.get('storage') or 'fp32'}) | {latency} | {minutes} "
            f"| {str(e.get('license') or '-').split(';')[0]} |"
        )
    if not entries:
        lines.append("| (no published weights) | | | | | | | |")
    return "\n".join(lines)


def update_readme_table(directory: Path | None = None, readme: Path | None = None) -> Path | None:
    """Rewrite the table between the markers of the README (and of the docs site's zoo page, ``docs/zoo.md``,
    beside it) from the manifest; returns the README, None when there is none."""
    directory = directory or weights_dir()
    readme = readme or directory.parent / "README.md"
    page = readme.parent / "docs" / "zoo.md"
    if page.is_file():
        _rewrite_table(page, directory)
    if not readme.is_file():
        return None
    return _rewrite_table(readme, directory)


def _rewrite_table(readme: Path, directory: Path) -> Path:
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise InvalidValueError(f"{str(readme)!r} lacks the model-zoo markers {README_START!r} ... {README_END!r}")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{zoo_table(read_manifest(directory))}\n{README_END}{tail}"
    with atomic_path(readme) as tmp:
        tmp.write_text(new)
    return readme


_WEIGHT_KEYS = {"onnxruntime": ("weight_type", "reduce_range"), NO_VNNI: ("weight_type", "reduce_range")}


def _int8_problems(entry: dict[str, Any]) -> list[str]:
    """What is wrong with a row's ``int8`` recipes: ``{key: {"method": str, "keep_float": [module names]}}`` with
    keys ``INT8_RECIPE_KEYS``, optionally with ``"calibration_crop": int`` (the window side the calibration images
    are cut to) and, for onnxruntime, ``"weight_type"`` and ``"reduce_range"``."""
    recipes = entry.get("int8")
    if recipes is None:
        return []
    name = f"{entry['model']}.{entry['tag']}"
    if not isinstance(recipes, dict) or set(recipes) - set(INT8_RECIPE_KEYS):
        return [f"{name}: int8 must map {INT8_RECIPE_KEYS} to recipes, got {recipes!r}"]
    problems = []
    for backend, recipe in recipes.items():
        crop = recipe.get("calibration_crop") if isinstance(recipe, dict) else None
        if (not isinstance(recipe, dict) or not {"keep_float", "method"} <= set(recipe)
                or set(recipe) - {"keep_float", "method", "calibration_crop", *_WEIGHT_KEYS.get(backend, ())}
                or recipe.get("weight_type", "int8") not in ("int8", "uint8")
                or not isinstance(recipe.get("reduce_range", False), bool)
                or not isinstance(recipe["method"], str) or not isinstance(recipe["keep_float"], list)
                or not all(isinstance(m, str) for m in recipe["keep_float"])
                or not (crop is None or (isinstance(crop, int) and not isinstance(crop, bool)))):
            weights = ", 'weight_type': 'int8' | 'uint8', 'reduce_range': bool" if backend in _WEIGHT_KEYS else ""
            problems.append(f"{name}: int8.{backend} must be {{'method': str, 'keep_float': [module names], "
                            f"optionally 'calibration_crop': int{weights}}}, got {recipe!r}")
    return problems


def check_manifest(directory: Path | None = None, models: Any = None) -> list[str]:
    """Disagreements between the manifest, the files in ``directory`` and the registry's file specs."""
    from segzoo.core.registry import MODELS

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
        problems += _int8_problems(entry)
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
        if path.is_file() and path.suffix == WEIGHT_SUFFIX and path.name not in files:
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
            problems.append(f"{key[0]}.{key[1]}: registry says {spec.file} {spec.sha256}, "
                            f"manifest {entry['file']} {entry['sha256']}")
    for key in sorted(listed):
        if key[0] not in models.own_names():
            problems.append(f"{key[0]}.{key[1]}: in the manifest but no registered model has that name")
    return problems
