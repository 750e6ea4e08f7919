"""Listing and describing what the registries hold."""

from __future__ import annotations

from typing import Any

from segzoo.models.factory import named_config
from segzoo.registry import DECODERS, ENCODERS, MODELS

__all__ = ["list_models", "list_encoders", "list_decoders", "model_info"]


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Named models matching the fnmatch ``pattern``, sorted; ``pretrained`` keeps those with published weights.

    Plugin models are listed without importing their plugin.
    """
    names = MODELS.names(pattern)
    if pretrained:
        names = [n for n in names if MODELS.entry(n).metadata.get("weights")]
    return names


def list_encoders(pattern: str = "*") -> list[str]:
    """Encoder names: segzoo's own, plugins' and every timm architecture, matching ``pattern``."""
    return ENCODERS.names(pattern)


def list_decoders(pattern: str = "*") -> list[str]:
    """Decoder names (core and plugins) matching ``pattern``."""
    return DECODERS.names(pattern)


def model_info(name: str) -> dict[str, Any]:
    """Config, source package and description of a named model (builds nothing)."""
    entry = MODELS.entry(name)
    config = named_config(name)
    doc = (getattr(entry.obj, "__doc__", None) or "").strip()
    return {
        "name": name,
        "description": doc.split("\n\n", 1)[0].replace("\n", " "),
        "source": entry.source,
        "builder": entry.origin,
        "decoder": config.decoder,
        "encoder": config.encoder.name,
        "num_classes": config.num_classes,
        "pretrained_tags": sorted(entry.metadata.get("weights") or {}),
        "config": config.to_dict(),
    }
