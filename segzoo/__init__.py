"""segzoo: a semantic-segmentation model zoo for PyTorch.

>>> import segzoo
>>> model = segzoo.create("deeplabv3plus_r50", num_classes=19)
>>> model = segzoo.create_model("unet", "convnext_tiny", num_classes=5)
>>> model.save_pretrained("my-model"); model = segzoo.from_pretrained("my-model")

Importing segzoo is cheap: timm and plugins are imported only when needed.
"""

from segzoo._version import __version__
from segzoo.api import (
    create,
    from_pretrained,
    list_converters,
    list_decoders,
    list_encoders,
    list_models,
    model_info,
)
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
from segzoo.errors import SegzooError
from segzoo.fast import optimize
from segzoo.models import SegmentationModel, build_model, create_model
from segzoo.registry import (
    PluginLoadError,
    RegistryConflictError,
    UnknownNameError,
    register_converter,
    register_decoder,
    register_encoder,
    register_model,
)
from segzoo.storage import save_pretrained


def export(model: SegmentationModel, path: str, *, dynamic: bool = True, opset: int | None = None,
           example_size: tuple[int, int] = (256, 320), uint8_input: bool = False) -> dict:
    """Export ``model`` with dynamic batch, height and width: ``.onnx`` (checked with onnxruntime; the ``export``
    extra) or ``.pt2`` (a ``torch.export`` program). The result is compared with ``model`` at other sizes
    before the file is kept, and carries classes, colours, preprocessing and input layout in its metadata;
    ``uint8_input`` bakes the normalisation into the graph (see ``segzoo.deploy``)."""
    from segzoo.deploy import export as export_model

    return export_model(model, path, dynamic=dynamic, opset=opset, example_size=example_size,
                        uint8_input=uint8_input)


def quantize(model: SegmentationModel, calibration, *, method: str = "minmax",
             example_size: tuple[int, int] = (256, 320)):
    """A static INT8 model of ``model`` for CPU inference with onnxruntime, calibrated on ``calibration`` (uint8
    images, as for ``model.predict``): a ``QuantizedModel`` with ``predict(images, tile=..., tta=...)``, ``save(path)``
    and a ``report`` (see ``segzoo.deploy.quantize``). Needs the ``export`` extra."""
    from segzoo.deploy import quantize as quantize_model

    return quantize_model(model, calibration, method=method, example_size=example_size)


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
    "SegzooError",
    "UnknownNameError",
    "build_model",
    "create",
    "create_model",
    "decoder_params",
    "export",
    "from_pretrained",
    "list_converters",
    "list_decoders",
    "list_encoders",
    "list_models",
    "model_info",
    "optimize",
    "quantize",
    "register_converter",
    "register_decoder",
    "register_encoder",
    "register_model",
    "save_pretrained",
]
