"""Weights at rest: the self-describing safetensors format, the ``save_pretrained`` folder, published weight
specs and the manifest, Hub transfers. Below ``models``: nothing here builds a model (loading is
``segzoo.api.from_pretrained``)."""

from segzoo.storage.format import WEIGHTS_NAME, WeightsFile, read_weights, write_weights
from segzoo.storage.save import save_pretrained
from segzoo.storage.specs import ChecksumError, WeightSpec

__all__ = [
    "save_pretrained", "WeightSpec", "ChecksumError", "WEIGHTS_NAME", "WeightsFile", "read_weights", "write_weights",
]
