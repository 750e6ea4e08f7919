"""segzoo: a semantic-segmentation model zoo for PyTorch.

>>> import segzoo
>>> model = segzoo.create("deeplabv3plus_r50", num_classes=19)
>>> model = segzoo.create_model("unet", "convnext_tiny", num_classes=5)
>>> model.save_pretrained("my-model"); model = segzoo.from_pretrained("my-model")

Importing segzoo is cheap: timm and plugins are imported only when needed.
"""

from segzoo._version import __version__
from segzoo.api import list_decoders, list_encoders, list_models, model_info
from segzoo.config import (
    AuxHeadConfig,
    ClassificationHeadConfig,
    EncoderConfig,
    ModelConfig,
    ModelMeta,
    Preprocessing,
)
from segzoo.decoders import Decoder, decoder_params
from segzoo.encoders import Encoder
from segzoo.fast import optimize
from segzoo.models import SegmentationModel, build_model, create, create_model
from segzoo.pretrained import from_pretrained, save_pretrained
from segzoo.registry import (
    PluginLoadError,
    RegistryConflictError,
    UnknownNameError,
    register_decoder,
    register_encoder,
    register_model,
)

__all__ = [
    "__version__",
    "AuxHeadConfig",
    "ClassificationHeadConfig",
    "Decoder",
    "Encoder",
    "EncoderConfig",
    "ModelConfig",
    "ModelMeta",
    "Preprocessing",
    "PluginLoadError",
    "RegistryConflictError",
    "SegmentationModel",
    "UnknownNameError",
    "build_model",
    "create",
    "create_model",
    "decoder_params",
    "from_pretrained",
    "list_decoders",
    "list_encoders",
    "list_models",
    "model_info",
    "optimize",
    "register_decoder",
    "register_encoder",
    "register_model",
    "save_pretrained",
]
