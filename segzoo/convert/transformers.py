"""Hugging Face transformers ``SegformerForSemanticSegmentation`` (SegFormer B0-B5), from a model object, a saved
folder or Hub snapshot (``config.json`` + weights), or a bare state dict.

Two key layouts exist: the files on the Hub and what transformers' ``save_pretrained`` writes keep the original
names (``segformer.encoder.block.{i}.{j}.attention.self.query``); transformers 5 renames modules in memory
(``segformer.stages.{i}.blocks.{j}.attention.q_proj``). Both are read. The converted model's logits, upsampled to
the input size, equal transformers' logits upsampled as its ``post_process_semantic_segmentation`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segzoo.convert._mapping import Rule, load_converted, read_checkpoint, rename
from segzoo.core.config import EncoderConfig, ModelConfig, ModelMeta, Preprocessing
from segzoo.core.errors import InvalidTypeError, InvalidValueError, MissingFileError
from segzoo.core.io import read_json_file
from segzoo.core.registry import register_converter
from segzoo.encoders.mit import MIT_SPECS
from segzoo.models.factory import build_model
from segzoo.models.segmentation_model import SegmentationModel
from segzoo.storage.hub import TRANSFORMERS_WEIGHTS

__all__ = ["from_transformers", "read_transformers_folder", "read_transformers", "config_number", "num_classes_of",
           "class_names_of", "preprocessing_of", "TRANSFORMERS_WEIGHTS", "DELEGATED"]

_BLOCK = r"^segformer\.encoder\.block\.(\d+)\.(\d+)\."
_STAGE = r"^segformer\.stages\.(\d+)\."
_RULES: list[Rule] = [
    # the Hub's (original) names
    (r"^segformer\.encoder\.patch_embeddings\.(\d+)\.proj\.", r"encoder.stages.\1.embed.proj."),
    (r"^segformer\.encoder\.patch_embeddings\.(\d+)\.layer_norm\.", r"encoder.stages.\1.embed.norm."),
    (r"^segformer\.encoder\.layer_norm\.(\d+)\.", r"encoder.stages.\1.norm."),
    (_BLOCK + r"layer_norm_1\.", r"encoder.stages.\1.blocks.\2.norm1."),
    (_BLOCK + r"layer_norm_2\.", r"encoder.stages.\1.blocks.\2.norm2."),
    (_BLOCK + r"attention\.self\.query\.", r"encoder.stages.\1.blocks.\2.attn.q."),
    (_BLOCK + r"attention\.self\.key\.", r"encoder.stages.\1.blocks.\2.attn.k."),
    (_BLOCK + r"attention\.self\.value\.", r"encoder.stages.\1.blocks.\2.attn.v."),
    (_BLOCK + r"attention\.self\.sr\.", r"encoder.stages.\1.blocks.\2.attn.sr."),
    (_BLOCK + r"attention\.self\.layer_norm\.", r"encoder.stages.\1.blocks.\2.attn.sr_norm."),
    (_BLOCK + r"attention\.output\.dense\.", r"encoder.stages.\1.blocks.\2.attn.proj."),
    (_BLOCK + r"mlp\.dense1\.", r"encoder.stages.\1.blocks.\2.mlp.fc1."),
    (_BLOCK + r"mlp\.dense2\.", r"encoder.stages.\1.blocks.\2.mlp.fc2."),
    (_BLOCK + r"mlp\.dwconv\.dwconv\.", r"encoder.stages.\1.blocks.\2.mlp.dwconv."),
    (r"^decode_head\.linear_c\.(\d+)\.proj\.", r"decoder.projections.\1."),
    # transformers 5's names in memory
    (_STAGE + r"patch_embeddings\.proj\.", r"encoder.stages.\1.embed.proj."),
    (_STAGE + r"patch_embeddings\.layer_norm\.", r"encoder.stages.\1.embed.norm."),
    (_STAGE + r"layer_norm\.", r"encoder.stages.\1.norm."),
    (_STAGE + r"blocks\.(\d+)\.layernorm_before\.", r"encoder.stages.\1.blocks.\2.norm1."),
    (_STAGE + r"blocks\.(\d+)\.layernorm_after\.", r"encoder.stages.\1.blocks.\2.norm2."),
    (_STAGE + r"blocks\.(\d+)\.attention\.q_proj\.", r"encoder.stages.\1.blocks.\2.attn.q."),
    (_STAGE + r"blocks\.(\d+)\.attention\.k_proj\.", r"encoder.stages.\1.blocks.\2.attn.k."),
    (_STAGE + r"blocks\.(\d+)\.attention\.v_proj\.", r"encoder.stages.\1.blocks.\2.attn.v."),
    (_STAGE + r"blocks\.(\d+)\.attention\.o_proj\.", r"encoder.stages.\1.blocks.\2.attn.proj."),
    (_STAGE + r"blocks\.(\d+)\.attention\.sequence_reduction\.sequence_reduction\.",
     r"encoder.stages.\1.blocks.\2.attn.sr."),
    (_STAGE + r"blocks\.(\d+)\.attention\.sequence_reduction\.layer_norm\.",
     r"encoder.stages.\1.blocks.\2.attn.sr_norm."),
    (_STAGE + r"blocks\.(\d+)\.mlp\.fc1\.", r"encoder.stages.\1.blocks.\2.mlp.fc1."),
    (_STAGE + r"blocks\.(\d+)\.mlp\.fc2\.", r"encoder.stages.\1.blocks.\2.mlp.fc2."),
    (_STAGE + r"blocks\.(\d+)\.mlp\.dwconv\.dwconv\.", r"encoder.stages.\1.blocks.\2.mlp.dwconv."),
    (r"^decode_head\.linear_projections\.(\d+)\.proj\.", r"decoder.projections.\1."),
    # the head, named alike in both
    (r"^decode_head\.linear_fuse\.", "decoder.fuse.0."),
    (r"^decode_head\.batch_norm\.", "decoder.fuse.1."),
    (r"^decode_head\.classifier\.", "head."),
]


def read_transformers_folder(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """The state dict, ``config.json`` and ``preprocessor_config.json`` (empty where absent) of a transformers
    ``save_pretrained`` folder or Hub snapshot."""
    folder = Path(folder)
    config = read_json_file(folder / "config.json", "transformers config")
    weights = next((folder / name for name in TRANSFORMERS_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        raise MissingFileError(f"transformers folder {str(folder)!r} has none of {list(TRANSFORMERS_WEIGHTS)}")
    processor = folder / "preprocessor_config.json"
    preprocessor = read_json_file(processor, "transformers preprocessor config") if processor.is_file() else {}
    return read_checkpoint(weights), config, preprocessor


def _spec_name(config: Mapping[str, Any], where: str) -> str:
    """The MiT variant a SegFormer config describes: every structural field must be the reference's."""
    sizes, depths = config.get("hidden_sizes"), config.get("depths")
    if not all(isinstance(v, list) and all(isinstance(i, int) for i in v) for v in (sizes, depths)):
        raise InvalidValueError(f"{where}: hidden_sizes and depths must be lists of integers, got {sizes!r} and "
                                f"{depths!r}")
    name = next((n for n, spec in MIT_SPECS.items() if [sizes, depths] == [list(spec.embed_dims), list(spec.depths)]),
                None)
    if name is None:
        known = {n: (list(s.embed_dims), list(s.depths)) for n, s in MIT_SPECS.items()}
        raise InvalidValueError(f"{where}: hidden_sizes {sizes} with depths {depths} is no MiT variant segzoo builds "
                                f"(known: {known})")
    spec = MIT_SPECS[name]
    expected = {"num_attention_heads": list(spec.num_heads), "sr_ratios": list(spec.sr_ratios),
                "mlp_ratios": [spec.mlp_ratio] * 4, "patch_sizes": [7, 3, 3, 3], "strides": [4, 2, 2, 2],
                "num_encoder_blocks": 4, "hidden_act": "gelu"}
    for key, value in expected.items():
        if key in config and config[key] != value:
            raise InvalidValueError(f"{where}: {key} is {config[key]!r}; segzoo's {name} has {value!r}")
    return name


def _infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A SegFormer config read off a bare state dict's shapes (heads and ratios are the reference's)."""
    layouts = (("segformer.encoder.patch_embeddings.{}.proj.weight", "segformer.encoder.block.{}."),
               ("segformer.stages.{}.patch_embeddings.proj.weight", "segformer.stages.{}.blocks."))
    found = next(((embed, block) for embed, block in layouts if embed.format(0) in state), None)
    if found is None:
        raise InvalidValueError("not a transformers SegFormer state dict: no patch embedding "
                                "'segformer.encoder.patch_embeddings.0.proj.weight' or "
                                "'segformer.stages.0.patch_embeddings.proj.weight'")
    embed, block = found
    sizes = [int(state[embed.format(i)].shape[0]) for i in range(4) if embed.format(i) in state]
    depths = []
    for i in range(len(sizes)):
        prefix = block.format(i)
        depths.append(len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)}))
    if "decode_head.classifier.weight" not in state or "decode_head.linear_fuse.weight" not in state:
        raise InvalidValueError("not a SegformerForSemanticSegmentation state dict: no 'decode_head.classifier' / "
                                "'decode_head.linear_fuse' (an encoder alone has no segmentation head)")
    return {"hidden_sizes": sizes, "depths": depths, "num_labels": int(state["decode_head.classifier.weight"].shape[0]),
            "decoder_hidden_size": int(state["decode_head.linear_fuse.weight"].shape[0]),
            "num_channels": int(state[embed.format(0)].shape[1])}


def config_number(config: Mapping[str, Any], key: str, default: float, kind: type, bounds: tuple[float, float],
                  where: str) -> Any:
    """A numeric config field, checked for type and range (a config file is untrusted input)."""
    value = config.get(key, default)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or (kind is int and not float(value).is_integer()):
        raise InvalidValueError(f"{where}: {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if not bounds[0] <= value <= bounds[1]:
        raise InvalidValueError(f"{where}: {key} is {value!r}, outside {bounds[0]}..{bounds[1]}")
    return kind(value)


def num_classes_of(state: Mapping[str, torch.Tensor], config: Mapping[str, Any], where: str) -> int:
    """The class count the weights hold (the classifier's rows); a config that states another is refused."""
    classifier = state.get("decode_head.classifier.weight")
    if classifier is None:
        raise InvalidValueError(f"{where}: no 'decode_head.classifier.weight': not a transformers ...ForSemantic"
                                "Segmentation checkpoint (an encoder alone has no segmentation head)")
    count = int(classifier.shape[0])
    stated = config.get("num_labels")
    if stated is not None and (isinstance(stated, bool) or stated != count):
        raise InvalidValueError(f"{where}: the config's num_labels is {stated!r}, but the classifier has {count} "
                                "classes")
    return count


def class_names_of(config: Mapping[str, Any], num_classes: int, where: str) -> list[str] | None:
    labels = config.get("id2label")
    if labels is None:
        return None
    if not isinstance(labels, Mapping) or len(labels) != num_classes:
        raise InvalidValueError(f"{where}: id2label must map each of the {num_classes} class ids to a name, got "
                                f"{len(labels) if isinstance(labels, Mapping) else type(labels).__name__} entries")
    try:
        names = [labels[i] if i in labels else labels[str(i)] for i in range(num_classes)]
    except KeyError as exc:
        raise InvalidValueError(f"{where}: id2label has no name for class id {exc}") from None
    if not all(isinstance(n, str) and 0 < len(n) <= 200 for n in names):
        raise InvalidValueError(f"{where}: id2label's names must be strings of 1..200 characters")
    return names


def preprocessing_of(processor: Mapping[str, Any], channels: int, where: str) -> Preprocessing:
    """The normalisation of a SegFormer image processor: ImageNet's mean and std unless it states others."""
    if not processor:
        return Preprocessing()
    if processor.get("do_normalize", True) is False:
        mean, std = [0.0] * channels, [1.0] * channels
    else:
        mean = processor.get("image_mean", [0.485, 0.456, 0.406])
        std = processor.get("image_std", [0.229, 0.224, 0.225])
    scale = processor.get("rescale_factor", 1 / 255) if processor.get("do_rescale", True) else 1.0
    if isinstance(mean, (int, float)) and not isinstance(mean, bool):  # transformers allows one value for all
        mean = [mean] * channels
    if isinstance(std, (int, float)) and not isinstance(std, bool):
        std = [std] * channels
    valid = (isinstance(mean, list) and isinstance(std, list)
             and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in [*mean, *std, scale]))
    if not valid or len(mean) != channels or len(std) != channels or not 0 < scale <= 1:
        raise InvalidValueError(f"{where}: preprocessor image_mean {mean!r}, image_std {std!r} and rescale_factor "
                                f"{scale!r} must be numbers, one mean and std per each of the {channels} channels")
    return Preprocessing(tuple(mean), tuple(std), (0.0, 255.0 * float(scale)))


def read_transformers(source: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any], str]:
    """``(state dict, config, preprocessor config, description)`` of a transformers model object, a
    ``save_pretrained`` folder / Hub snapshot, or a bare state dict (file or dict; its config empty)."""
    if isinstance(source, nn.Module):
        config = getattr(source, "config", None)
        if config is None or not hasattr(config, "to_dict"):
            raise InvalidTypeError(f"expected a transformers model (with .config), got {type(source).__name__}")
        return dict(source.state_dict()), config.to_dict(), {}, f"transformers {type(source).__name__}"
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        state, config, processor = read_transformers_folder(source)
        return state, config, processor, f"transformers folder {str(source)!r}"
    return read_checkpoint(source), {}, {}, "transformers SegFormer state dict"


@register_converter("transformers")
def from_transformers(source: nn.Module | dict | str | Path, preprocessor: Mapping[str, Any] | None = None
                      ) -> SegmentationModel:
    """An equivalent segzoo SegFormer from a transformers ``SegformerForSemanticSegmentation`` model, a folder
    holding its ``config.json`` and weights (a Hub snapshot), or its state dict (file or dict; the variant is read
    off the shapes). Class names come from the config's ``id2label``, the normalisation from
    ``preprocessor_config.json`` (or ``preprocessor``), else ImageNet's, as its image processor."""
    state, config, processor, where = read_transformers(source)
    processor = dict(preprocessor) if preprocessor is not None else processor
    if config:
        kind = config.get("model_type")
        if kind in DELEGATED:  # an architecture a plugin owns: its converter, registered under that name
            return _delegate(kind, source, processor, where)
        if kind != "segformer":
            raise InvalidValueError(f"{where}: model_type {kind!r} is not converted by segzoo's transformers importer "
                                    "(it converts 'segformer'; UperNet comes with the segzoo-extra-decoders plugin)")
    else:
        config = _infer_config(state)
    encoder = _spec_name(config, where)
    num_classes = num_classes_of(state, config, where)
    channels = config_number(config, "num_channels", 3, int, (1, 64), where)
    dropout = config_number(config, "classifier_dropout_prob", 0.1, float, (0.0, 1.0), where)
    width = config_number(config, "decoder_hidden_size", 256, int, (1, 8192), where)
    model_config = ModelConfig(EncoderConfig(encoder, in_channels=channels), "segformer", num_classes,
                               {"channels": width, "dropout": dropout})
    meta = ModelMeta(class_names=class_names_of(config, num_classes, where),
                     preprocessing=preprocessing_of(processor, channels, where))
    renamed = rename({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, _RULES, where)
    return load_converted(build_model(model_config, meta), renamed, where, fixups=(_linear_to_conv, _bn_counter))


# transformers model types whose segzoo architecture lives in a plugin: model_type -> (converter name, plugin)
DELEGATED = {"upernet": ("transformers_upernet", "segzoo-extra-decoders")}


def _delegate(kind: str, source: Any, processor: Mapping[str, Any], where: str) -> SegmentationModel:
    from segzoo.core.registry import CONVERTERS

    name, plugin = DELEGATED[kind]
    if name not in CONVERTERS:
        raise InvalidValueError(f"{where}: model_type {kind!r} is converted by the {plugin!r} plugin's {name!r} "
                                f"converter, which is not installed (pip install ./plugins/{plugin} from a checkout)")
    return CONVERTERS.get(name)(source, preprocessor=processor)


def _linear_to_conv(state: dict[str, torch.Tensor]) -> None:
    """The decoder's per-token linear projections are 1 x 1 convolutions here."""
    for key in [k for k in state if k.startswith("decoder.projections.") and k.endswith(".weight")]:
        if state[key].ndim == 2:
            state[key] = state[key][:, :, None, None]


def _bn_counter(state: dict[str, torch.Tensor]) -> None:
    state["decoder.fuse.1.num_batches_tracked"] = torch.tensor(0)
