"""Any timm backbone that supports ``features_only`` as a segzoo encoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from segzoo.core.config import EncoderConfig, Preprocessing
from segzoo.core.errors import InvalidValueError
from segzoo.encoders.base import Encoder, OutputStrideError
from segzoo.encoders.weights import load_encoder_file

__all__ = ["TimmEncoder", "TimmFallback"]


def _create_features_model(name: str, kwargs: dict[str, Any]) -> Any:
    """``timm.create_model(..., features_only=True)``, enabling dynamic input sizes where the family has them."""
    import timm

    try:
        return timm.create_model(name, features_only=True, dynamic_img_size=True, **kwargs)
    except TypeError as exc:
        if "dynamic_img_size" not in str(exc):
            raise
    return timm.create_model(name, features_only=True, **kwargs)


class TimmEncoder(Encoder):
    """A timm ``features_only`` model behind the encoder contract.

    Features are returned NCHW whatever timm's layout (Swin and other channels-last
    families are permuted). A requested ``output_stride`` is checked against the
    reductions of the built model: families that cannot dilate raise an error
    instead of silently returning a stride-32 model.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        kwargs: dict[str, Any] = {"in_chans": config.in_channels, **config.params}
        if config.depth is not None:
            kwargs["out_indices"] = tuple(range(config.depth))
        if config.output_stride not in (None, 32):
            kwargs["output_stride"] = config.output_stride
        pretrained = config.weights == "imagenet"
        try:
            self.model = _create_features_model(config.name, {**kwargs, "pretrained": pretrained})
        except TypeError as exc:
            if "output_stride" not in str(exc):
                raise InvalidValueError(f"could not build timm encoder {config.name!r} with {kwargs}: {exc}") from exc
            # a family without dilation: its natural stride may still be the one asked for (checked below)
            kwargs.pop("output_stride")
            self.model = _create_features_model(config.name, {**kwargs, "pretrained": pretrained})
        except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
            raise InvalidValueError(f"could not build timm encoder {config.name!r} with {kwargs}: {exc}") from exc

        info = self.model.feature_info
        self.out_channels = tuple(int(c) for c in info.channels())
        self.reductions = tuple(int(r) for r in info.reduction())
        self.input_divisor = max(self.reductions)
        self._nhwc = str(getattr(self.model, "output_fmt", "NCHW")).endswith("NHWC")

        if config.output_stride is not None and max(self.reductions) != config.output_stride:
            raise OutputStrideError(
                f"encoder {config.name!r} was asked for output_stride={config.output_stride} but its features "
                f"have reductions {list(self.reductions)}; this family does not support that stride"
            )
        if config.uniform_dilation:
            self._make_dilation_uniform()
        if config.weights == "imagenet":  # timm's download: its pretrained config says how it was trained
            cfg = getattr(self.model, "pretrained_cfg", None) or {}
            if "mean" in cfg and "std" in cfg:
                self.preprocessing = Preprocessing(tuple(cfg["mean"]), tuple(cfg["std"]))
        elif config.weights is not None:
            load_encoder_file(self, self.model, config.weights)

    def _make_dilation_uniform(self) -> None:
        """Within each stage, raise every k x k convolution to the stage's largest dilation."""
        for name in self.model.feature_info.module_name():
            # timm's feature wrappers keep stage "a.b" as attribute "a_b"
            stage = getattr(self.model, name.replace(".", "_"), None) or self.model.get_submodule(name)
            convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1]
            rate = max((m.dilation[0] for m in convs), default=1)
            for conv in convs:
                if conv.dilation[0] != rate and conv.stride == (1, 1):
                    conv.dilation = (rate, rate)
                    conv.padding = ((conv.kernel_size[0] // 2) * rate, (conv.kernel_size[1] // 2) * rate)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.model(x)
        if self._nhwc:
            features = [f.permute(0, 3, 1, 2) for f in features]
        return list(features)


class TimmFallback:
    """Every timm architecture is an encoder name (registered and plugin names win); timm is imported only
    when a name is looked up or listed."""

    source = "timm"

    def resolve(self, name: str) -> type[TimmEncoder] | None:
        import timm

        return TimmEncoder if timm.is_model(name) else None

    def names(self, pattern: str) -> list[str]:
        import timm

        return list(timm.list_models(pattern))
