"""segzoo: a semantic-segmentation model zoo for PyTorch.

>>> import segzoo
>>> model = segzoo.create("deeplabv3plus_r50", num_classes=19)
>>> model = segzoo.create_model("unet", "convnext_tiny", num_classes=5)
>>> model.save_pretrained("my-model"); model = segzoo.from_pretrained("my-model")
>>> runtime = segzoo.load("model.onnx")  # weights or an export: .predict(), .meta, .num_classes

Importing segzoo is cheap: every name below is imported when first used (torch, timm and plugins included), so
``segzoo --help`` and ``segzoo list`` do not pay for them.

The tree, bottom-up: ``core`` (errors, io, config, registry, outputs, device, timing) -> ``layers``, ``encoders``,
``decoders`` -> ``models`` -> ``storage``, ``convert`` -> ``api`` -> ``inference`` -> ``deploy``, ``training`` ->
``cli``; ``data`` sits beside ``layers``. ``tests/test_architecture.py`` holds every module to that order.
"""

from __future__ import annotations

from segzoo._version import __version__
from segzoo.core.lazy import lazy_exports

# public name -> the module that defines it
_EXPORTS = {
    "create": "segzoo.api", "from_pretrained": "segzoo.api", "list_models": "segzoo.api",
    "list_encoders": "segzoo.api", "list_decoders": "segzoo.api", "list_converters": "segzoo.api",
    "model_info": "segzoo.api", "load": "segzoo.api",
    "AuxHeadConfig": "segzoo.core.config", "ClassificationHeadConfig": "segzoo.core.config",
    "EncoderConfig": "segzoo.core.config", "ModelConfig": "segzoo.core.config", "ModelMeta": "segzoo.core.config",
    "Preprocessing": "segzoo.core.config",
    "SegzooError": "segzoo.core.errors", "UnknownNameError": "segzoo.core.errors",
    "PluginLoadError": "segzoo.core.registry", "RegistryConflictError": "segzoo.core.registry",
    "register_converter": "segzoo.core.registry", "register_decoder": "segzoo.core.registry",
    "register_encoder": "segzoo.core.registry", "register_model": "segzoo.core.registry",
    "Decoder": "segzoo.decoders", "decoder_params": "segzoo.decoders",
    "Encoder": "segzoo.encoders",
    "SegmentationModel": "segzoo.models", "build_model": "segzoo.models", "create_model": "segzoo.models",
    "save_pretrained": "segzoo.storage",
    "optimize": "segzoo.inference.fast",
    "export": "segzoo.deploy", "quantize": "segzoo.deploy", "prune": "segzoo.deploy",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), submodules=True)
