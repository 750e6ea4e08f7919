"""torch.hub entry points: one per named segzoo model.

    model = torch.hub.load("org/segzoo", "unet_carvana", pretrained=True, scale=0.5)

Keyword arguments are those of ``segzoo.create`` (``num_classes``, ``in_channels``,
``encoder_weights``, decoder parameters, ...); ``pretrained=True`` loads the default
published weights, ``pretrained="tag"`` another tag. Only the ``segzoo`` package is
imported, and only inside the entry points. ``tests/test_hubconf.py`` checks this file
lists exactly ``segzoo.list_models()``.
"""

dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub"]


def _create(name, pretrained, kwargs):
    import segzoo

    return segzoo.create(name, pretrained=pretrained, **kwargs)


def deeplabv3_mnv2(pretrained=False, **kwargs):
    """DeepLabV3 on MobileNetV2 1.0 at output stride 16 (ASPP 6/12/18), the mobile setting of the MobileNetV2 paper."""
    return _create("deeplabv3_mnv2", pretrained, kwargs)


def deeplabv3_r101(pretrained=False, **kwargs):
    """DeepLabV3 on dilated ResNet-101 (output stride 8, ASPP 12/24/36), as torchvision's deeplabv3_resnet101."""
    return _create("deeplabv3_r101", pretrained, kwargs)


def deeplabv3_r50(pretrained=False, **kwargs):
    """DeepLabV3 on dilated ResNet-50 (output stride 8, ASPP 12/24/36), as torchvision's deeplabv3_resnet50."""
    return _create("deeplabv3_r50", pretrained, kwargs)


def deeplabv3plus_mnv2(pretrained=False, **kwargs):
    """DeepLabV3+ on MobileNetV2 1.0: output stride 16, separable ASPP 6/12/18, 48-channel low-level projection."""
    return _create("deeplabv3plus_mnv2", pretrained, kwargs)


def deeplabv3plus_r101(pretrained=False, **kwargs):
    """DeepLabV3+ on ResNet-101: output stride 16, separable ASPP 6/12/18, 48-channel low-level projection."""
    return _create("deeplabv3plus_r101", pretrained, kwargs)


def deeplabv3plus_r50(pretrained=False, **kwargs):
    """DeepLabV3+ on ResNet-50: output stride 16, separable ASPP 6/12/18, 48-channel low-level projection."""
    return _create("deeplabv3plus_r50", pretrained, kwargs)


def fcn_r101(pretrained=False, **kwargs):
    """FCN on dilated ResNet-101 (output stride 8), the head of torchvision's fcn_resnet101."""
    return _create("fcn_r101", pretrained, kwargs)


def fcn_r50(pretrained=False, **kwargs):
    """FCN on dilated ResNet-50 (output stride 8), the head of torchvision's fcn_resnet50."""
    return _create("fcn_r50", pretrained, kwargs)


def swin_unet_t(pretrained=False, **kwargs):
    """Swin-Unet (Cao et al. 2021) on timm's Swin-T (patch 4, window 7), decoder depths 2/2/2, 9 classes (Synapse)."""
    return _create("swin_unet_t", pretrained, kwargs)


def unet_carvana(pretrained=False, scale=0.5, **kwargs):
    """The classic U-Net of milesial/Pytorch-UNet (Carvana): widths 64..1024, transposed-conv upsampling, 2 classes.

    As milesial/Pytorch-UNet's own hub entry: ``pretrained=True`` loads the authors' Carvana
    checkpoint for ``scale`` 0.5 or 1.0 (downloaded once, converted, cached as segzoo weights).
    """
    if pretrained is True:
        tags = {0.5: "scale0.5", 1.0: "scale1.0"}
        if scale not in tags:
            raise ValueError(f"unet_carvana weights exist for scale 0.5 and 1.0, got scale={scale!r}")
        pretrained = tags[scale]
    return _create("unet_carvana", pretrained, kwargs)


def unet_mnv2(pretrained=False, **kwargs):
    """U-Net on MobileNetV2 1.0 (timm mobilenetv2_100)."""
    return _create("unet_mnv2", pretrained, kwargs)


def unet_r18(pretrained=False, **kwargs):
    """U-Net on ResNet-18, the structure of smp's Unet('resnet18')."""
    return _create("unet_r18", pretrained, kwargs)


def unet_r34(pretrained=False, **kwargs):
    """U-Net on ResNet-34, the structure of smp's Unet('resnet34')."""
    return _create("unet_r34", pretrained, kwargs)


def unet_r50(pretrained=False, **kwargs):
    """U-Net on ResNet-50, the structure of smp's Unet('resnet50')."""
    return _create("unet_r50", pretrained, kwargs)


def unet_lite0(pretrained=False, **kwargs):
    """U-Net on EfficientNet-Lite0 (timm efficientnet_lite0: PyTorch padding, ReLU6, no squeeze-excitation)."""
    return _create("unet_lite0", pretrained, kwargs)


def unet_lite2(pretrained=False, **kwargs):
    """U-Net on EfficientNet-Lite2 (timm efficientnet_lite2: PyTorch padding, ReLU6, no squeeze-excitation)."""
    return _create("unet_lite2", pretrained, kwargs)


def deeplabv3plus_lite0(pretrained=False, **kwargs):
    """DeepLabV3+ on EfficientNet-Lite0: output stride 16, separable ASPP 6/12/18, 48-channel low-level projection."""
    return _create("deeplabv3plus_lite0", pretrained, kwargs)


def deeplabv3plus_lite2(pretrained=False, **kwargs):
    """DeepLabV3+ on EfficientNet-Lite2: output stride 16, separable ASPP 6/12/18, 48-channel low-level projection."""
    return _create("deeplabv3plus_lite2", pretrained, kwargs)
