"""Turning configs into models: a config, a registered name's config with overrides, or free composition.
Nothing here reads weights files (``segzoo.api`` does)."""

from __future__ import annotations

import dataclasses
from typing import Any

from segzoo.core.config import (
    AuxHeadConfig,
    ClassificationHeadConfig,
    EncoderConfig,
    ModelConfig,
    ModelMeta,
)
from segzoo.core.errors import InvalidTypeError
from segzoo.core.registry import MODELS
from segzoo.decoders import decoder_params
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["build_model", "create_model", "named_config", "apply_overrides"]

# override keyword -> EncoderConfig field
_ENCODER_KEYS = {
    "encoder": "name",
    "in_channels": "in_channels",
    "encoder_depth": "depth",
    "output_stride": "output_stride",
    "encoder_weights": "weights",
    "encoder_params": "params",
}
_MODEL_KEYS = {"num_classes", "head_kernel_size", "aux_head", "classification_head", "align_corners"}


def _aux_head(value: Any) -> AuxHeadConfig | None:
    if value is None or value is False:
        return None
    if value is True:
        return AuxHeadConfig()
    if isinstance(value, AuxHeadConfig):
        return value
    if isinstance(value, dict):
        return AuxHeadConfig.from_dict(value)
    raise InvalidTypeError(f"aux_head must be a bool, dict or AuxHeadConfig, got {type(value).__name__}")


def _classification_head(value: Any) -> ClassificationHeadConfig | None:
    if value is None:
        return None
    if isinstance(value, ClassificationHeadConfig):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return ClassificationHeadConfig(num_classes=value)
    if isinstance(value, dict):
        return ClassificationHeadConfig.from_dict(value)
    raise InvalidTypeError(
        f"classification_head must be a number of classes, dict or ClassificationHeadConfig, got {value!r}"
    )


def apply_overrides(config: ModelConfig, **overrides: Any) -> ModelConfig:
    """A copy of ``config`` with keyword overrides applied.

    Accepted: ``num_classes``, ``in_channels``, ``encoder``, ``encoder_weights``,
    ``encoder_depth``, ``output_stride``, ``encoder_params``, ``head_kernel_size``,
    ``aux_head``, ``classification_head``, ``align_corners`` and any parameter of
    the config's decoder. Anything else is an error listing what is accepted.
    """
    encoder = config.encoder.to_dict()
    model: dict[str, Any] = {}
    decoder = dict(config.decoder_params)
    accepted_decoder = decoder_params(config.decoder)
    for key, value in overrides.items():
        if value is None and key in ("num_classes", "in_channels"):
            continue
        if key in _ENCODER_KEYS:
            field = _ENCODER_KEYS[key]
            if key == "encoder" and value != encoder["name"]:
                encoder["params"] = {}  # builder-specific parameters do not carry over to another encoder
            encoder[field] = dict(value or {}) if field == "params" else value
        elif key == "aux_head":
            model[key] = _aux_head(value)
        elif key == "classification_head":
            model[key] = _classification_head(value)
        elif key in _MODEL_KEYS:
            model[key] = value
        elif key in accepted_decoder:
            decoder[key] = value
        else:
            raise InvalidTypeError(
                f"unknown override {key!r} for a {config.decoder!r} model; accepted: "
                f"{sorted(set(_ENCODER_KEYS) | _MODEL_KEYS)} and the decoder's parameters {sorted(accepted_decoder)}"
            )
    # validated once, by the new frozen config
    return dataclasses.replace(config, encoder=EncoderConfig.from_dict(encoder), decoder_params=decoder, **model)


def build_model(config: ModelConfig, meta: ModelMeta | None = None) -> SegmentationModel:
    """Build the model a config describes; ``build_model(model.config)`` re-creates ``model`` exactly.
    ``meta`` (classes, colours, preprocessing) is checked against the config; None: the encoder weights'
    normalisation, no class names."""
    if not isinstance(config, ModelConfig):
        raise InvalidTypeError(f"build_model expects a ModelConfig, got {type(config).__name__}")
    if meta is not None and not isinstance(meta, ModelMeta):
        raise InvalidTypeError(f"build_model expects a ModelMeta or None as meta, got {type(meta).__name__}")
    return SegmentationModel(config, meta)


def named_config(name: str) -> ModelConfig:
    """The default config of the named model ``name``."""
    config = MODELS.get(name)()
    if not isinstance(config, ModelConfig):
        raise InvalidTypeError(f"model builder {name!r} returned {type(config).__name__}, expected a ModelConfig")
    return config


def create_model(
    decoder: str,
    encoder: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    encoder_weights: str | None = None,
    encoder_depth: int | None = None,
    output_stride: int | None = None,
    encoder_params: dict[str, Any] | None = None,
    head_kernel_size: int = 1,
    aux_head: bool | dict[str, Any] | AuxHeadConfig | None = None,
    classification_head: int | dict[str, Any] | ClassificationHeadConfig | None = None,
    align_corners: bool = False,
    **decoder_kwargs: Any,
) -> SegmentationModel:
    """Compose any decoder with any encoder: ``create_model('unet', 'convnext_tiny', num_classes=5)``.

    ``output_stride`` None uses the decoder's design stride (8 for FCN/DeepLabV3,
    16 for DeepLabV3+, the encoder's own otherwise). Extra keywords are the
    decoder's parameters (``segzoo.decoder_params(decoder)``).
    """
    config = ModelConfig(
        encoder=EncoderConfig(
            name=encoder,
            in_channels=in_channels,
            depth=encoder_depth,
            output_stride=output_stride,
            weights=encoder_weights,
            params=dict(encoder_params or {}),
        ),
        decoder=decoder,
        num_classes=num_classes,
        decoder_params=dict(decoder_kwargs),
        head_kernel_size=head_kernel_size,
        aux_head=_aux_head(aux_head),
        classification_head=_classification_head(classification_head),
        align_corners=align_corners,
    )
    return build_model(config)
