"""The segmentation model: encoder -> decoder -> head, any input size."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.config import ModelConfig, ModelMeta
from segzoo.decoders import build_decoder
from segzoo.encoders import Encoder, OutputStrideError, build_encoder
from segzoo.errors import InvalidTypeError, InvalidValueError
from segzoo.layers import AuxHead, ClassificationHead, SegmentationHead
from segzoo.registry import DECODERS

__all__ = ["SegmentationModel"]


class SegmentationModel(nn.Module):
    """Encoder, decoder and segmentation head built from a :class:`ModelConfig`.

    ``forward(x)`` takes an ``(N, in_channels, H, W)`` float batch of any H, W:
    the input is zero-padded at the bottom/right to the multiple the architecture
    needs and the logits are cropped back, so the output is ``(N, num_classes, H, W)``.
    With an auxiliary or classification head configured, ``forward`` returns a
    dict with ``"out"`` (the logits) and ``"aux"`` / ``"cls"``.
    """

    def __init__(self, config: ModelConfig, meta: ModelMeta | None = None) -> None:
        super().__init__()
        config.validate()
        self.config = config.copy()
        self.meta = meta if meta is not None else ModelMeta()
        self.meta.check(config.num_classes)
        self.encoder = self._build_encoder(config)
        self.decoder = build_decoder(
            config.decoder, self.encoder.out_channels, self.encoder.reductions, config.decoder_params
        )
        self.head = SegmentationHead(self.decoder.out_channels, config.num_classes, config.head_kernel_size)
        self.aux_head: AuxHead | None = None
        self.aux_index = 0
        if config.aux_head is not None:
            n = len(self.encoder.out_channels)
            idx = config.aux_head.feature_index
            if not -n <= idx < n:
                raise InvalidValueError(f"aux_head.feature_index={idx} is out of range for an encoder with {n} features")
            self.aux_index = idx % n
            self.aux_head = AuxHead(
                self.encoder.out_channels[idx], config.num_classes, config.aux_head.channels, config.aux_head.dropout
            )
        self.classification_head: ClassificationHead | None = None
        if config.classification_head is not None:
            c = config.classification_head
            self.classification_head = ClassificationHead(
                self.encoder.out_channels[-1], c.num_classes, c.pooling, c.dropout
            )
        self.input_divisor = math.lcm(self.encoder.input_divisor, self.decoder.input_divisor)

    @staticmethod
    def _build_encoder(config: ModelConfig) -> Encoder:
        """An unset output stride means the decoder's design stride where the encoder can dilate, else its own."""
        default = getattr(DECODERS.get(config.decoder), "default_output_stride", None)
        if config.encoder.output_stride is not None or default is None:
            return build_encoder(config.encoder)
        try:
            return build_encoder(dataclasses.replace(config.encoder, output_stride=default))
        except OutputStrideError:  # transformers and other families without a dilated form
            return build_encoder(config.encoder)

    def save_pretrained(self, directory: str, **meta: Any) -> Path:
        """Write ``model.safetensors``, ``config.json`` and a ``README.md`` model card (see ``segzoo.save_pretrained``)."""
        from segzoo.storage.save import save_pretrained

        return save_pretrained(self, directory, **meta)

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
        from segzoo.fast import optimize, predict_classes

        versions = tuple(t._version for t in self.state_dict().values())
        device = next(self.parameters()).device
        cache = self.__dict__.get("_fast_cache")
        if cache is None or cache[0] != versions or cache[1] != device:
            self.__dict__.pop("_fast_cache", None)  # not copied into the new optimised copy
            cache = (versions, device, optimize(self))
            self.__dict__["_fast_cache"] = cache
        return predict_classes(cache[2], images, self.meta.preprocessing, tile=tile, overlap=overlap, tta=tuple(tta),
                               scales=tuple(scales), batch=batch)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def in_channels(self) -> int:
        return self.config.encoder.in_channels

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise InvalidTypeError(f"expected a torch.Tensor of shape (N, {self.in_channels}, H, W), got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InvalidValueError(
                f"expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
                + (" (add a batch dimension with x.unsqueeze(0))" if x.ndim == 3 else "")
            )
        if not x.is_floating_point():
            raise InvalidTypeError(f"expected a floating-point input (normalised image), got dtype {x.dtype}")

    def _resize(self, logits: torch.Tensor, size: tuple[int, int], height: int, width: int) -> torch.Tensor:
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=self.config.align_corners)
        return logits[..., :height, :width]

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        self._check_input(x)
        height, width = x.shape[-2], x.shape[-1]
        d = self.input_divisor
        # padded unconditionally (zero amounts cost a copy): a branch on the size would make exported graphs
        # (ONNX, torch.export) specialise to the example input's divisibility
        pad_h, pad_w = (d - height % d) % d, (d - width % d) % d
        x = F.pad(x, (0, pad_w, 0, pad_h))
        size = (height + pad_h, width + pad_w)
        features = self.encoder(x)
        logits = self._resize(self.head(self.decoder(features)), size, height, width)
        if self.aux_head is None and self.classification_head is None:
            return logits
        out = {"out": logits}
        if self.aux_head is not None:
            out["aux"] = self._resize(self.aux_head(features[self.aux_index]), size, height, width)
        if self.classification_head is not None:
            out["cls"] = self.classification_head(features[-1])
        return out
