"""The benchmark pairs: each segzoo model and its peer, same architecture, random weights."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import segzoo

__all__ = ["Pair", "PAIRS", "OutTensor"]


class OutTensor(nn.Module):
    """torchvision's segmentation models return ``{"out": ...}``: unwrap, so both sides return a tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


@dataclass(frozen=True)
class Pair:
    name: str
    segzoo: Callable[[], nn.Module]
    peer: Callable[[], nn.Module] | None
    peer_name: str


def _smp(cls: str, encoder: str, **kw) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import segmentation_models_pytorch as smp

        return getattr(smp, cls)(encoder, encoder_weights=None, **kw)

    return build


def _tv(fn: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from torchvision.models import segmentation

        return OutTensor(getattr(segmentation, fn)(weights=None, weights_backbone=None, aux_loss=False, num_classes=21))

    return build


class TransformersSegformer(nn.Module):
    """transformers' SegFormer, its logits upsampled to the input size as its post-processing does: the same
    output as segzoo's model, so both sides do the same work."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        wide = variant != "b0"
        config = SegformerConfig(hidden_sizes=[64, 128, 320, 512] if wide else [32, 64, 160, 256],
                                 depths={"b0": [2, 2, 2, 2], "b2": [3, 4, 6, 3]}[variant],
                                 decoder_hidden_size=768 if wide else 256, num_labels=150)
        self.model = SegformerForSemanticSegmentation(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(pixel_values=x).logits
        return nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _classic_unet() -> nn.Module:
    from tests.helpers.classic_unet import MilesialUNet

    return MilesialUNet(3, 2)


PAIRS: dict[str, Pair] = {
    p.name: p
    for p in [
        Pair("unet_r34", lambda: segzoo.create("unet_r34"), _smp("Unet", "resnet34", classes=1),
             "smp Unet('resnet34')"),
        Pair("deeplabv3plus_r50", lambda: segzoo.create("deeplabv3plus_r50"),
             _smp("DeepLabV3Plus", "resnet50", classes=21, decoder_atrous_rates=(6, 12, 18)),
             "smp DeepLabV3Plus('resnet50')"),
        Pair("deeplabv3_r50", lambda: segzoo.create("deeplabv3_r50"), _tv("deeplabv3_resnet50"),
             "torchvision deeplabv3_resnet50"),
        Pair("fcn_r50", lambda: segzoo.create("fcn_r50"), _tv("fcn_resnet50"), "torchvision fcn_resnet50"),
        Pair("unet_carvana", lambda: segzoo.create("unet_carvana"), _classic_unet, "classic U-Net (milesial layout)"),
        Pair("swin_unet_t", lambda: segzoo.create("swin_unet_t"), None, "-"),
        Pair("segformer_b0", lambda: segzoo.create("segformer_b0"), lambda: TransformersSegformer("b0"),
             "transformers SegformerForSemanticSegmentation (B0) + upsampling"),
        Pair("segformer_b2", lambda: segzoo.create("segformer_b2"), lambda: TransformersSegformer("b2"),
             "transformers SegformerForSemanticSegmentation (B2) + upsampling"),
        Pair("segformer_b0_smp", lambda: segzoo.create("segformer_b0"),
             _smp("Segformer", "mit_b0", classes=150), "smp Segformer('mit_b0')"),
    ]
}
