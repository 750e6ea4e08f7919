"""The segmentation model: encoder -> decoder -> head, any input size."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.core.config import ModelConfig, ModelMeta, Preprocessing
from segzoo.core.errors import InvalidTypeError, InvalidValueError
from segzoo.core.outputs import SegmentationOutput
from segzoo.core.registry import DECODERS
from segzoo.decoders import build_decoder, decoder_params
from segzoo.encoders import Encoder, OutputStrideError, build_encoder
from segzoo.layers import AuxHead, ClassificationHead, SegmentationHead

__all__ = ["SegmentationModel", "SegmentationOutput"]


def _explicit_defaults(defaults: dict[str, Any]) -> dict[str, Any]:
    """The decoder's defaults that a JSON config can state (a plugin's callable default stays implicit)."""
    out = {}
    for key, value in defaults.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out


class SegmentationModel(nn.Module):
    """Encoder, decoder and segmentation head built from a :class:`ModelConfig`.

    ``forward(x)`` takes an ``(N, in_channels, H, W)`` float batch of any H, W:
    the input is zero-padded at the bottom/right to the multiple the architecture
    needs and the logits are cropped back, so the output is ``(N, num_classes, H, W)``
    logits, whatever heads are configured. ``forward_heads(x)`` also returns the
    auxiliary and classification heads' outputs (a :class:`SegmentationOutput`).

    ``model.config`` is the resolved config: the output stride the encoder was built
    with, every decoder parameter, the auxiliary head's width.
    """

    def __init__(self, config: ModelConfig, meta: ModelMeta | None = None) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise InvalidTypeError(f"SegmentationModel expects a ModelConfig, got {type(config).__name__}")
        if meta is not None:
            meta.check(config.num_classes)
        # where the weights were read from ({"source", "sha256"}; set by from_pretrained, never saved): exports
        # and fine-tuned models name it as their provenance
        self.loaded_from: dict[str, str] | None = None
        decoder_cls = DECODERS.get(config.decoder)  # looked up once per build
        self.encoder = self._build_encoder(config, getattr(decoder_cls, "default_output_stride", None))
        # no meta given: normalise as the encoder's pretrained weights expect (ImageNet's mean/std otherwise)
        self.meta = meta if meta is not None else ModelMeta(
            preprocessing=dataclasses.replace(self.encoder.preprocessing) if self.encoder.preprocessing
            else Preprocessing())
        decoder_args = {**_explicit_defaults(decoder_params(decoder_cls)), **config.decoder_params}
        self.decoder = build_decoder(config.decoder, self.encoder.out_channels, self.encoder.reductions, decoder_args,
                                     decoder_cls)
        self.head = SegmentationHead(self.decoder.out_channels, config.num_classes, config.head_kernel_size)
        self.aux_head: AuxHead | None = None
        self.aux_index = 0
        aux = config.aux_head
        if aux is not None:
            n = len(self.encoder.out_channels)
            if not -n <= aux.feature_index < n:
                raise InvalidValueError(
                    f"aux_head.feature_index={aux.feature_index} is out of range for an encoder with {n} features")
            self.aux_index = aux.feature_index % n
            in_channels = self.encoder.out_channels[self.aux_index]
            # None: a quarter of the feature's channels, as torchvision
            aux = dataclasses.replace(aux, channels=aux.channels if aux.channels is not None else in_channels // 4)
            self.aux_head = AuxHead(in_channels, config.num_classes, aux.channels, aux.dropout)
        self.config = dataclasses.replace(
            config,
            encoder=dataclasses.replace(config.encoder, output_stride=max(self.encoder.reductions)),
            decoder_params=decoder_args,
            aux_head=aux,
        )
        self.classification_head: ClassificationHead | None = None
        if config.classification_head is not None:
            c = config.classification_head
            self.classification_head = ClassificationHead(
                self.encoder.out_channels[-1], c.num_classes, c.pooling, c.dropout
            )
        self.input_divisor = math.lcm(self.encoder.input_divisor, self.decoder.input_divisor)
        if config.pruned:  # a pruned model: the recorded widths, before any weights are loaded
            from segzoo.models.widths import apply_widths

            apply_widths(self, config.pruned)

    @staticmethod
    def _build_encoder(config: ModelConfig, default: int | None) -> Encoder:
        """An unset output stride means the decoder's design stride (``default``) where the encoder can dilate,
        else its own."""
        if config.encoder.output_stride is not None or default is None:
            return build_encoder(config.encoder)
        try:
            return build_encoder(dataclasses.replace(config.encoder, output_stride=default))
        except OutputStrideError:  # transformers and other families without a dilated form
            return build_encoder(config.encoder)

    def save_pretrained(self, directory: str, **meta: Any) -> Path:
        """Write ``model.safetensors``, ``config.json`` and a ``README.md`` model card
        (see ``segzoo.save_pretrained``)."""
        from segzoo.storage.save import save_pretrained

        return save_pretrained(self, directory, **meta)

    @classmethod
    def from_pretrained(cls, source: str | Path, **kwargs: Any) -> SegmentationModel:
        """The model saved at ``source`` (a file, a ``save_pretrained`` folder, ``hf-hub:org/name`` or a zoo name
        with a tag), the pair of :meth:`save_pretrained`; ``kwargs`` as :func:`segzoo.from_pretrained`."""
        # the front door's loader (it reaches the zoo, the Hub and the importers, which sit above this layer),
        # resolved at call time: tests/test_architecture.py allows exactly this upward call
        from segzoo.api import from_pretrained

        return from_pretrained(source, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload the ``save_pretrained`` layout to the Hugging Face Hub (see ``segzoo.storage.hub``)."""
        from segzoo.storage.hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    def predict(self, images: Any, *, tile: int | None = None, overlap: float = 0.25, tta: Sequence[str] = (),
                scales: Sequence[float] = (1.0,), batch: int = 4) -> torch.Tensor:
        """Class ids ``(N, H, W)`` through the fast path (``segzoo.optimize``).

        ``images``: uint8 ``(N, C, H, W)`` / ``(C, H, W)`` tensors or ``(N, H, W, C)`` / ``(H, W, C)``
        numpy arrays, normalised with ``self.meta.preprocessing``; float tensors are taken as normalised.
        The optimised copy is cached and rebuilt when the weights change. ``tile`` (pixels) predicts large images
        by blended windows of that size, ``batch`` windows at a time; ``tta`` (``"hflip"``, ``"vflip"``) and
        ``scales`` average the probabilities of flipped and rescaled views (see ``segzoo.tiling``).
        """
        from segzoo.inference.fast import optimize, predict_classes

        device = next(self.parameters()).device
        if device.type == "meta":
            raise InvalidValueError("the model's weights are on the meta device (built without values): load "
                                    "weights into it before predicting (model.to_empty(device='cpu'), then "
                                    "load_state_dict)")
        versions = tuple(t._version for t in self.state_dict().values())
        cache = self.__dict__.get("_fast_cache")
        if cache is None or cache[0] != versions or cache[1] != device:
            self.__dict__.pop("_fast_cache", None)  # not copied into the new optimised copy
            cache = (versions, device, optimize(self))
            self.__dict__["_fast_cache"] = cache
        return predict_classes(cache[2], images, self.meta.preprocessing, tile=tile, overlap=overlap, tta=tta,
                               scales=scales, batch=batch)

    @property
    def meta(self) -> ModelMeta:
        """Classes, colours, preprocessing and provenance; assigning one checks it against the model's classes
        (a model with 5 classes and 11 class colours cannot come about)."""
        return self._meta

    @meta.setter
    def meta(self, value: ModelMeta) -> None:
        if not isinstance(value, ModelMeta):
            raise InvalidTypeError(f"model.meta must be a ModelMeta, got {type(value).__name__}")
        config = self.__dict__.get("config")
        if config is not None:
            value.check(config.num_classes)
        self.__dict__["_meta"] = value

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def in_channels(self) -> int:
        return self.config.encoder.in_channels

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise InvalidTypeError(f"expected a torch.Tensor of shape (N, {self.in_channels}, H, W), "
                                   f"got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InvalidValueError(
                f"expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
                + (" (add a batch dimension with x.unsqueeze(0))" if x.ndim == 3 else "")
            )
        if not x.is_floating_point():
            raise InvalidTypeError(f"expected a floating-point input (normalised image), got dtype {x.dtype}")

    def _resize(self, logits: torch.Tensor, reduction: int, size: tuple[int, int], height: int,
                width: int) -> torch.Tensor:
        # Exported programs must hold at every size, so nothing here may depend on the size's value: resize by the
        # architecture's declared reduction (comparing sizes is a guard). While exporting, crop by a negative pad:
        # a cropped view's contiguity is a guard "padded width != width" that rejected sizes divisible by 32, and
        # OpenVINO computed a gather of rows and columns after the resize wrongly (150 classes at 512x512). Eagerly
        # the view is free, where a copy costs (+130 ms per 8x352x352 training step).
        if reduction != 1:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=self.config.align_corners)
        if torch.compiler.is_exporting():
            return F.pad(logits, (0, width - logits.shape[-1], 0, height - logits.shape[-2]))
        return logits[..., :height, :width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, H, W)``."""
        return self.forward_heads(x).logits

    def forward_heads(self, x: torch.Tensor) -> SegmentationOutput:
        """Logits and the auxiliary / classification heads' outputs (None where the model has no such head):
        what training with those heads needs."""
        self._check_input(x)
        height, width = x.shape[-2], x.shape[-1]
        d = self.input_divisor
        # padded unconditionally (zero amounts cost a copy): a branch on the size would make exported graphs
        # (ONNX, torch.export) specialise to the example input's divisibility
        pad_h, pad_w = (d - height % d) % d, (d - width % d) % d
        x = F.pad(x, (0, pad_w, 0, pad_h))
        size = (height + pad_h, width + pad_w)
        features = self.encoder(x)
        return SegmentationOutput(
            self._resize(self.head(self.decoder(features)), self.decoder.output_reduction, size, height, width),
            None if self.aux_head is None else self._resize(self.aux_head(features[self.aux_index]),
                                                            self.encoder.reductions[self.aux_index], size, height,
                                                            width),
            None if self.classification_head is None else self.classification_head(features[-1]),
        )
