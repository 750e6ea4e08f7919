"""``save_pretrained``: the Hugging Face folder layout, written atomically."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segzoo._version import __version__
from segzoo.core.config import DescribedModel, ModelMeta, Preprocessing
from segzoo.core.errors import InvalidTypeError, InvalidValueError, NotAFolderError
from segzoo.core.io import atomic_folder
from segzoo.storage.format import WEIGHTS_NAME, standalone, write_weights

__all__ = ["save_pretrained", "model_card", "WEIGHTS_NAME", "CONFIG_NAME", "CARD_NAME"]

CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


def _merge_meta(model: DescribedModel, overrides: Mapping[str, Any]) -> ModelMeta:
    data = model.meta.to_dict()
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in data:
            raise InvalidTypeError(f"save_pretrained got unknown argument {key!r}; accepted: {sorted(data)}")
        data[key] = value.to_dict() if isinstance(value, Preprocessing) else value
    meta = ModelMeta.from_dict(data)
    meta.check(model.config.num_classes)
    return meta


def _source(record: Mapping[str, Any] | None) -> str:
    record = record or {}
    return f"`{record.get('source', 'unknown')}` (sha256 `{record.get('sha256', 'unknown')}`)"


def lineage(meta: ModelMeta) -> list[str]:
    """What these weights were made from, one sentence each, for every card (``save_pretrained``'s and the zoo's
    published one): the unpruned parent and how it was pruned, the weights fine-tuned, the teacher distilled from,
    each with its sha256, then what each earlier stage was made from (``meta.ancestry``). Empty for a model trained
    from an ImageNet encoder."""
    lines = []
    if meta.pruning:
        pr = meta.pruning
        origin = f" from {_source(pr['parent'])}" if pr.get("parent") else ""  # None: pruned in memory
        lines.append(f"Structurally pruned{origin}: {pr.get('criterion')} ranking, scope "
                     f"{pr.get('scope', 'model')}, {100 * pr.get('kept_flops', 0):.1f}% of its FLOPs kept (target "
                     f"{100 * pr.get('target_flops', 0):.0f}%, counted at {pr.get('example_size')}); the pruned "
                     "widths are in the config.")
    if meta.parent:
        lines.append(f"Fine-tuned from {_source(meta.parent)}.")
    if meta.teacher:
        t = meta.teacher
        schedule = t.get("weight_schedule", "constant")
        decay = "" if schedule == "constant" else f" decaying to 0 ({schedule})"
        lines.append(f"Distilled from the teacher {_source(t)}: {t.get('loss')} loss, weight {t.get('weight')}"
                     f"{decay}, temperature {t.get('temperature')}.")
    for stage in reversed(meta.ancestry):  # the nearest earlier stage first, as the sentences above go back
        made = [f"{verb} {_source({'source': stage[role], 'sha256': stage.get(role + '_sha256', 'unknown')})}"
                for role, verb in (("parent", "fine-tuned from"), ("teacher", "distilled from the teacher"))
                if stage.get(role)]
        lines.append(f"Earlier, {_source(stage)} was {' and '.join(made)}.")
    return lines


def model_card(model: DescribedModel, meta: ModelMeta, repo_id: str | None = None) -> str:
    """A README.md model card: architecture, classes, preprocessing, metrics, data, licence, how to load."""
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    classes = meta.class_names or [str(i) for i in range(cfg.num_classes)]
    pre = meta.preprocessing
    load = f'segzoo.from_pretrained("hf-hub:{repo_id}")' if repo_id else 'segzoo.from_pretrained("path/to/this/folder")'
    lines = [
        "---",
        "library_name: segzoo",
        "tags: [segzoo, semantic-segmentation, pytorch]",
        f"license: {(meta.license or 'other').lower()}",
        "---",
        "",
        f"# {cfg.decoder} / {cfg.encoder.name}",
        "",
        meta.description or "A semantic-segmentation model saved by segzoo.",
        "",
        "## Architecture",
        f"- decoder `{cfg.decoder}`, encoder `{cfg.encoder.name}` (in_channels {cfg.encoder.in_channels},"
        f" output stride {cfg.encoder.output_stride or 'natural'}), {params:,} parameters",
        f"- written by segzoo {__version__}; the full config is in `config.json` and in the weights' header",
        "",
        f"## Classes ({cfg.num_classes})",
        ", ".join(f"{i}: {c}" for i, c in enumerate(classes)),
        "",
        "## Preprocessing",
        f"RGB scaled to [{pre.input_range[0]:g}, {pre.input_range[1]:g}], then normalised with mean {list(pre.mean)}"
        f" and std {list(pre.std)}.",
        "",
        "## Training data and metrics",
        f"- dataset: {meta.dataset or 'not given'}",
    ]
    if meta.encoder_weights:
        lines.append(f"- encoder initialised from `{meta.encoder_weights}` before training (provenance only: "
                     "loading reads this model's own weights file and nothing else)")
    lines += [f"- {line}" for line in lineage(meta)]
    if meta.training:
        lines.append("- further training requires: " + ", ".join(f"`{k}: {v}`" for k, v in meta.training.items()))
    lines += [f"- {k}: {v}" for k, v in meta.metrics.items()] or ["- metrics: not given"]
    lines += [
        "",
        "## Licence",
        meta.license or "not given",
        "",
        "## How to load",
        "```python",
        "import segzoo",
        f"model = {load}",
        "```",
        "",
    ]
    return "\n".join(lines)


def save_pretrained(
    model: DescribedModel,
    directory: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    dataset: str | None = None,
    metrics: Mapping[str, float] | None = None,
    license: str | None = None,
    description: str | None = None,
    repo_id: str | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` (and ``extra_files``: name -> text) into
    ``directory``.

    Given metadata is stored in the model's ``meta`` too. The folder is saved as a whole: the files are written
    into a temporary folder beside it, which then replaces it in one step (files of the old folder that this save
    does not write are kept). A crash or kill leaves the old folder or the complete new one, never a mix; a
    failure removes the temporary folder; concurrent saves into one folder take turns; a full disk is a
    ``WriteError`` naming the file.
    """
    overrides = {
        "class_names": list(class_names) if class_names is not None else None,
        "preprocessing": preprocessing,
        "dataset": dataset,
        "metrics": dict(metrics) if metrics is not None else None,
        "license": license,
        "description": description,
    }
    meta = _merge_meta(model, overrides)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotAFolderError(f"save_pretrained needs a folder, {str(directory)!r} is a file")
    config, stored_meta = standalone(model.config, meta)
    config_json = json.dumps(
        {"segzoo_version": __version__, "model": config.to_dict(), **stored_meta.to_dict()}, indent=2
    )
    extra = dict(extra_files or {})
    clash = sorted(set(extra) & {WEIGHTS_NAME, CONFIG_NAME, CARD_NAME})
    bad = [name for name in extra if Path(name).name != name or name.startswith(".")]
    if clash or bad:
        raise InvalidValueError(f"save_pretrained extra_files: {clash or bad} cannot be written (plain file names, "
                                f"other than {WEIGHTS_NAME}, {CONFIG_NAME}, {CARD_NAME})")
    with atomic_folder(directory) as tmp:
        write_weights(model, tmp / WEIGHTS_NAME, meta)
        (tmp / CONFIG_NAME).write_text(config_json + "\n")
        (tmp / CARD_NAME).write_text(model_card(model, stored_meta, repo_id))
        for name, text in extra.items():
            (tmp / name).write_text(text)
    model.meta = stored_meta
    return directory
