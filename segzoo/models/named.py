"""Named models: each a function returning the config of a reference design.

Defaults follow the design each name refers to (class counts included:
torchvision's 21 VOC classes for FCN / DeepLab, smp's single class for the
ResNet / MobileNet U-Nets, 2 for Carvana); pass ``num_classes=`` to change them.
Each is registered under its function's name. Weights the zoo trains are listed in
``weights/manifest.json`` and found there by name when a tag is asked for; weights
published elsewhere (the Carvana checkpoints) are declared here.
"""

from __future__ import annotations

from segzoo.core.config import EncoderConfig, ModelConfig
from segzoo.core.registry import register_model
from segzoo.core.specs import WeightSpec, published

MILESIAL_RELEASE = "https://github.com/milesial/Pytorch-UNet/releases/download/v3.0"

SMP_UNET = {"decoder_channels": (256, 128, 64, 32, 16), "upsampling": "nearest"}

TORCHVISION_MODELS = "https://download.pytorch.org/models"
# torchvision's 21 classes of its COCO-VOC weights (torchvision.models._meta._VOC_CATEGORIES)
VOC_CLASSES = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def _coco_voc(file: str, miou: float, pixel_acc: float, arch: str) -> dict[str, WeightSpec]:
    """torchvision's published COCO-VOC weights: downloaded, checked against the sha256 prefix in the file name,
    converted once."""
    return published(WeightSpec(
        "coco_voc", url=f"{TORCHVISION_MODELS}/{file}", convert="torchvision",
        dataset="COCO train2017, the 20 Pascal VOC categories (+ background)",
        license="BSD-3-Clause (torchvision); COCO images carry their own terms",
        metrics={"miou": miou, "pixel_acc": pixel_acc},
        description=f"torchvision's {arch} weights; figures are torchvision's, on COCO val2017 with VOC labels",
        class_names=VOC_CLASSES,
    ))


SEGFORMER_LICENSE = ("NVIDIA Source Code License for SegFormer: non-commercial use only (research and "
                     "evaluation)")
# single-scale val mIoU of the SegFormer paper (Xie et al. 2021, arXiv:2105.15203, Table 1), by variant
SEGFORMER_MIOU = {"b0": (37.4, 76.2), "b1": (42.2, 78.5), "b2": (46.5, 81.0), "b3": (49.4, 81.7),
                  "b4": (50.3, 82.3), "b5": (51.0, 82.4)}


def _nvidia(variant: str) -> dict[str, WeightSpec]:
    """NVIDIA's SegFormer checkpoints on the Hugging Face Hub (transformers repos, converted once, cached)."""
    ade, cityscapes = SEGFORMER_MIOU[variant]
    size = "640-640" if variant == "b5" else "512-512"
    return published(
        WeightSpec("ade20k", hub=f"nvidia/segformer-{variant}-finetuned-ade-{size}", convert="transformers",
                   dataset=f"ADE20K (150 classes), {size.replace('-', 'x')} crops", license=SEGFORMER_LICENSE,
                   metrics={"miou": ade},
                   description="NVIDIA's checkpoint; mIoU as the SegFormer paper reports it (single scale)"),
        WeightSpec("cityscapes", hub=f"nvidia/segformer-{variant}-finetuned-cityscapes-1024-1024",
                   convert="transformers", dataset="Cityscapes (19 classes), 1024x1024 crops",
                   license=SEGFORMER_LICENSE, metrics={"miou": cityscapes},
                   description="NVIDIA's checkpoint; mIoU as the SegFormer paper reports it (single scale)"),
    )


def _unet(encoder: str, num_classes: int = 1) -> ModelConfig:
    return ModelConfig(EncoderConfig(encoder), "unet", num_classes, dict(SMP_UNET), head_kernel_size=3)


def _fcn(encoder: str) -> ModelConfig:
    return ModelConfig(EncoderConfig(encoder, output_stride=8), "fcn", 21)


def _deeplabv3(encoder: str, output_stride: int = 8, rates: tuple[int, ...] = (12, 24, 36)) -> ModelConfig:
    return ModelConfig(
        EncoderConfig(encoder, output_stride=output_stride), "deeplabv3", 21, {"atrous_rates": rates}
    )


def _deeplabv3plus(encoder: str) -> ModelConfig:
    params = {"atrous_rates": (6, 12, 18), "separable": True, "low_level_channels": 48}
    return ModelConfig(EncoderConfig(encoder, output_stride=16), "deeplabv3plus", 21, params)


@register_model(
    weights=published(
        *(
            WeightSpec(
                f"scale{scale}",
                url=f"{MILESIAL_RELEASE}/unet_carvana_scale{scale}_epoch2.pth",
                convert="milesial",
                dataset="Carvana Image Masking Challenge (Kaggle), images at scale " + scale,
                license="GPL-3.0 (milesial/Pytorch-UNet)",
                description=f"the original authors' checkpoint, trained on images scaled by {scale}",
            )
            for scale in ("0.5", "1.0")
        )
    ),
    # as milesial/Pytorch-UNet's own hub entry: pretrained=True with scale=0.5 or 1.0 picks the checkpoint
    tag_keywords={"scale": {0.5: "scale0.5", 1.0: "scale1.0"}},
)
def unet_carvana() -> ModelConfig:
    """The classic U-Net of milesial/Pytorch-UNet (Carvana): widths 64..1024, transposed-conv upsampling, 2 classes.

    As milesial/Pytorch-UNet's own hub entry: ``pretrained=True`` loads the authors' Carvana checkpoint for
    ``scale`` 0.5 (the default) or 1.0 (downloaded once, converted, cached as segzoo weights).
    """
    return ModelConfig(
        EncoderConfig("plain", params={"widths": (64, 128, 256, 512, 1024)}),
        "unet",
        2,
        {"decoder_channels": (512, 256, 128, 64), "upsampling": "transposed"},
    )


@register_model
def unet_r18() -> ModelConfig:
    """U-Net on ResNet-18, the structure of smp's Unet('resnet18')."""
    return _unet("resnet18")


@register_model
def unet_r34() -> ModelConfig:
    """U-Net on ResNet-34, the structure of smp's Unet('resnet34')."""
    return _unet("resnet34")


@register_model
def unet_r50() -> ModelConfig:
    """U-Net on ResNet-50, the structure of smp's Unet('resnet50')."""
    return _unet("resnet50")


@register_model
def unet_mnv2() -> ModelConfig:
    """U-Net on MobileNetV2 1.0 (timm mobilenetv2_100)."""
    return _unet("mobilenetv2_100")


@register_model
def unet_lite0() -> ModelConfig:
    """U-Net on EfficientNet-Lite0 (timm efficientnet_lite0: PyTorch padding, ReLU6, no squeeze-excitation)."""
    return _unet("efficientnet_lite0")


@register_model
def unet_lite2() -> ModelConfig:
    """U-Net on EfficientNet-Lite2 (timm efficientnet_lite2: PyTorch padding, ReLU6, no squeeze-excitation)."""
    return _unet("efficientnet_lite2")


@register_model(weights=_coco_voc("fcn_resnet50_coco-1167a1af.pth", 60.5, 91.4, "fcn_resnet50"))
def fcn_r50() -> ModelConfig:
    """FCN on dilated ResNet-50 (output stride 8), the head of torchvision's fcn_resnet50."""
    return _fcn("resnet50")


@register_model(weights=_coco_voc("fcn_resnet101_coco-7ecb50ca.pth", 63.7, 91.9, "fcn_resnet101"))
def fcn_r101() -> ModelConfig:
    """FCN on dilated ResNet-101 (output stride 8), the head of torchvision's fcn_resnet101."""
    return _fcn("resnet101")


@register_model(weights=_coco_voc("deeplabv3_resnet50_coco-cd0a2569.pth", 66.4, 92.4, "deeplabv3_resnet50"))
def deeplabv3_r50() -> ModelConfig:
    """DeepLabV3 on dilated ResNet-50 (output stride 8, ASPP 12/24/36), as torchvision's deeplabv3_resnet50."""
    return _deeplabv3("resnet50")


@register_model(weights=_coco_voc("deeplabv3_resnet101_coco-586e9e4e.pth", 67.4, 92.4, "deeplabv3_resnet101"))
def deeplabv3_r101() -> ModelConfig:
    """DeepLabV3 on dilated ResNet-101 (output stride 8, ASPP 12/24/36), as torchvision's deeplabv3_resnet101."""
    return _deeplabv3("resnet101")


@register_model
def deeplabv3_mnv2() -> ModelConfig:
    """DeepLabV3 on MobileNetV2 1.0 at output stride 16 (ASPP 6/12/18), the mobile setting of the MobileNetV2 paper."""
    return _deeplabv3("mobilenetv2_100", output_stride=16, rates=(6, 12, 18))


@register_model(weights=_coco_voc("deeplabv3_mobilenet_v3_large-fc3c493d.pth", 60.3, 91.2,
                                  "deeplabv3_mobilenet_v3_large"))
def deeplabv3_mnv3() -> ModelConfig:
    """DeepLabV3 on torchvision's MobileNetV3-Large at output stride 16 (ASPP 12/24/36), as torchvision's
    deeplabv3_mobilenet_v3_large (its auxiliary classifier, when asked for, reads the 40-channel stride-8 tap)."""
    return ModelConfig(EncoderConfig("tv_mobilenet_v3_large", output_stride=16), "deeplabv3", 21,
                       {"atrous_rates": (12, 24, 36)})


@register_model(weights=_coco_voc("lraspp_mobilenet_v3_large-d234d4ea.pth", 57.9, 91.2, "lraspp_mobilenet_v3_large"))
def lraspp_mnv3() -> ModelConfig:
    """Lite R-ASPP on torchvision's MobileNetV3-Large at output stride 16, as torchvision's
    lraspp_mobilenet_v3_large: 21 classes (VOC)."""
    return ModelConfig(EncoderConfig("tv_mobilenet_v3_large", output_stride=16), "lraspp", 21,
                       {"channels": 128, "low_reduction": 8})


@register_model
def deeplabv3plus_r50() -> ModelConfig:
    """DeepLabV3+ on ResNet-50: output stride 16, separable ASPP 6/12/18, 48-channel low-level projection."""
    return _deeplabv3plus("resnet50")


@register_model
def deeplabv3plus_r101() -> ModelConfig:
    """DeepLabV3+ on ResNet-101: output stride 16, separable ASPP 6/12/18, 48-channel low-level projection."""
    return _deeplabv3plus("resnet101")


@register_model
def deeplabv3plus_mnv2() -> ModelConfig:
    """DeepLabV3+ on MobileNetV2 1.0: output stride 16, separable ASPP 6/12/18, 48-channel low-level projection."""
    return _deeplabv3plus("mobilenetv2_100")


@register_model
def deeplabv3plus_lite0() -> ModelConfig:
    """DeepLabV3+ on EfficientNet-Lite0: output stride 16, separable ASPP 6/12/18, 48-channel low-level projection."""
    return _deeplabv3plus("efficientnet_lite0")


@register_model
def deeplabv3plus_lite2() -> ModelConfig:
    """DeepLabV3+ on EfficientNet-Lite2: output stride 16, separable ASPP 6/12/18, 48-channel low-level projection."""
    return _deeplabv3plus("efficientnet_lite2")


@register_model
def swin_unet_t() -> ModelConfig:
    """Swin-Unet (Cao et al. 2021) on timm's Swin-T (patch 4, window 7), decoder depths 2/2/2, 9 classes (Synapse)."""
    return ModelConfig(
        EncoderConfig("swin_tiny_patch4_window7_224"),
        "swin_unet",
        9,
        {"depths": (2, 2, 2), "window_size": 7},
    )


def _segformer(encoder: str, channels: int) -> ModelConfig:
    return ModelConfig(EncoderConfig(encoder), "segformer", 150, {"channels": channels})


@register_model(weights=_nvidia("b0"))
def segformer_b0() -> ModelConfig:
    """SegFormer-B0 (Xie et al., 2021): MiT-B0 and the all-MLP decoder of width 256; 150 classes (ADE20K)."""
    return _segformer("mit_b0", 256)


@register_model(weights=_nvidia("b1"))
def segformer_b1() -> ModelConfig:
    """SegFormer-B1: MiT-B1 and the all-MLP decoder of width 256; 150 classes (ADE20K)."""
    return _segformer("mit_b1", 256)


@register_model(weights=_nvidia("b2"))
def segformer_b2() -> ModelConfig:
    """SegFormer-B2: MiT-B2 and the all-MLP decoder of width 768; 150 classes (ADE20K)."""
    return _segformer("mit_b2", 768)


@register_model(weights=_nvidia("b3"))
def segformer_b3() -> ModelConfig:
    """SegFormer-B3: MiT-B3 and the all-MLP decoder of width 768; 150 classes (ADE20K)."""
    return _segformer("mit_b3", 768)


@register_model(weights=_nvidia("b4"))
def segformer_b4() -> ModelConfig:
    """SegFormer-B4: MiT-B4 and the all-MLP decoder of width 768; 150 classes (ADE20K)."""
    return _segformer("mit_b4", 768)


@register_model(weights=_nvidia("b5"))
def segformer_b5() -> ModelConfig:
    """SegFormer-B5: MiT-B5 and the all-MLP decoder of width 768; 150 classes (ADE20K)."""
    return _segformer("mit_b5", 768)
