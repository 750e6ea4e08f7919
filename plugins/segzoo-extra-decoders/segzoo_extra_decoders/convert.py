"""transformers' UperNet (``UperNetForSemanticSegmentation`` with a ConvNeXt backbone, e.g.
``openmmlab/upernet-convnext-tiny``) as a segzoo model of this plugin's ``upernet`` decoder on timm's ConvNeXt.

transformers normalises each backbone stage's output (``backbone.hidden_states_norms``), which timm's feature
extractor does not: the decoder is built with ``feature_norms=True`` to hold those four LayerNorms. The auxiliary
FCN head is a training-time loss only and is left out; the logits equal transformers' at any size."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segzoo import EncoderConfig, ModelConfig, ModelMeta, SegmentationModel, build_model
from segzoo.convert import load_converted, rename
from segzoo.convert.transformers import (
    class_names_of,
    config_number,
    num_classes_of,
    preprocessing_of,
    read_transformers,
)
from segzoo.core.errors import InvalidValueError

__all__ = ["from_transformers_upernet"]

_RULES = [
    (r"^backbone\.embeddings\.patch_embeddings\.", "encoder.model.stem_0."),
    (r"^backbone\.embeddings\.layernorm\.", "encoder.model.stem_1."),
    (r"^backbone\.encoder\.stages\.(\d+)\.downsampling_layer\.", r"encoder.model.stages_\1.downsample."),
    (r"^backbone\.encoder\.stages\.(\d+)\.layers\.(\d+)\.dwconv\.", r"encoder.model.stages_\1.blocks.\2.conv_dw."),
    (r"^backbone\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layernorm\.", r"encoder.model.stages_\1.blocks.\2.norm."),
    (r"^backbone\.encoder\.stages\.(\d+)\.layers\.(\d+)\.pwconv1\.", r"encoder.model.stages_\1.blocks.\2.mlp.fc1."),
    (r"^backbone\.encoder\.stages\.(\d+)\.layers\.(\d+)\.pwconv2\.", r"encoder.model.stages_\1.blocks.\2.mlp.fc2."),
    (r"^backbone\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer_scale_parameter$",
     r"encoder.model.stages_\1.blocks.\2.gamma"),
    (r"^backbone\.hidden_states_norms\.stage1\.", "decoder.norms.0."),
    (r"^backbone\.hidden_states_norms\.stage2\.", "decoder.norms.1."),
    (r"^backbone\.hidden_states_norms\.stage3\.", "decoder.norms.2."),
    (r"^backbone\.hidden_states_norms\.stage4\.", "decoder.norms.3."),
    (r"^decode_head\.psp_modules\.(\d+)\.1\.conv\.", r"decoder.ppm.stages.\1.1.0."),
    (r"^decode_head\.psp_modules\.(\d+)\.1\.batch_norm\.", r"decoder.ppm.stages.\1.1.1."),
    (r"^decode_head\.bottleneck\.conv\.", "decoder.ppm.fuse.0."),
    (r"^decode_head\.bottleneck\.batch_norm\.", "decoder.ppm.fuse.1."),
    (r"^decode_head\.lateral_convs\.(\d+)\.conv\.", r"decoder.lateral.\1.0."),
    (r"^decode_head\.lateral_convs\.(\d+)\.batch_norm\.", r"decoder.lateral.\1.1."),
    (r"^decode_head\.fpn_convs\.(\d+)\.conv\.", r"decoder.fpn.\1.0."),
    (r"^decode_head\.fpn_convs\.(\d+)\.batch_norm\.", r"decoder.fpn.\1.1."),
    (r"^decode_head\.fpn_bottleneck\.conv\.", "decoder.fuse.0."),
    (r"^decode_head\.fpn_bottleneck\.batch_norm\.", "decoder.fuse.1."),
    (r"^decode_head\.classifier\.", "head."),
]


def _ints(config: Mapping[str, Any], key: str, length: int | None, where: str) -> list[int]:
    value = config.get(key)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 8192
                                              for v in value) or (length is not None and len(value) != length):
        raise InvalidValueError(f"{where}: {key} must be a list of {length or 'some'} positive integers, got "
                                f"{value!r}"[:300])
    return value


def _backbone(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    backbone = config.get("backbone_config")
    if not isinstance(backbone, Mapping) or backbone.get("model_type") != "convnext":
        kind = backbone.get("model_type") if isinstance(backbone, Mapping) else backbone
        raise InvalidValueError(f"{where}: the UperNet importer converts ConvNeXt backbones, got {kind!r}")
    if backbone.get("out_features", ["stage1", "stage2", "stage3", "stage4"]) != ["stage1", "stage2", "stage3",
                                                                                    "stage4"]:
        raise InvalidValueError(f"{where}: backbone out_features must be the four stages, got "
                                f"{backbone.get('out_features')!r}")
    return dict(backbone)


def _model_config(config: Mapping[str, Any], state: Mapping[str, torch.Tensor], where: str) -> ModelConfig:
    backbone = _backbone(config, where)
    dims, depths = _ints(backbone, "hidden_sizes", 4, where), _ints(backbone, "depths", 4, where)
    channels = config_number(backbone, "num_channels", 3, int, (1, 64), where)
    width = config_number(config, "hidden_size", 512, int, (1, 8192), where)
    scales = _ints(config, "pool_scales", None, where)
    # timm's ConvNeXt with the checkpoint's depths and widths (any size: tiny, small, base, large, xlarge)
    encoder = EncoderConfig("convnext_tiny", in_channels=channels, params={"depths": depths, "dims": dims})
    return ModelConfig(encoder, "upernet", num_classes_of(state, config, where),
                       {"channels": width, "pool_scales": scales, "feature_norms": True})


def from_transformers_upernet(source: nn.Module | dict | str | Path, preprocessor: Mapping[str, Any] | None = None
                              ) -> SegmentationModel:
    """An equivalent segzoo model from a transformers ``UperNetForSemanticSegmentation`` (ConvNeXt backbone): the
    model object or a ``save_pretrained`` folder / Hub snapshot. Class names from ``id2label``, the normalisation
    from ``preprocessor_config.json`` (or ``preprocessor``), else ImageNet's."""
    state, config, processor, where = read_transformers(source)
    processor = dict(preprocessor) if preprocessor is not None else processor
    if config.get("model_type") != "upernet":
        raise InvalidValueError(f"{where}: model_type {config.get('model_type')!r}; this importer converts "
                                "'upernet' (a bare state dict does not say its backbone: pass the folder or model)")
    model_config = _model_config(config, state, where)
    meta = ModelMeta(class_names=class_names_of(config, model_config.num_classes, where),
                     preprocessing=preprocessing_of(processor, model_config.encoder.in_channels, where))
    kept = {k: v for k, v in state.items()
            if not k.startswith("auxiliary_head.") and not k.endswith("num_batches_tracked")}
    renamed = rename(kept, _RULES, where)
    return load_converted(build_model(model_config, meta), renamed, where, fixups=(_bn_counters,))


def _bn_counters(state: dict[str, torch.Tensor]) -> None:
    """BatchNorm step counters (not used in eval, dropped above) as a freshly built model has them."""
    for key in [k for k in state if k.endswith(".running_var")]:
        state[key[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0)
