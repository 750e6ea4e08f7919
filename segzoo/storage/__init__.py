"""Weights at rest: the self-describing safetensors format, the ``save_pretrained`` folder, published weight
specs with the download cache, the manifest, Hub transfers.
May import: core (models satisfy ``core.config.DescribedModel``; nothing here builds one: loading is
``segzoo.api.from_pretrained``).
"""

from segzoo.storage.format import WEIGHTS_NAME, WeightsFile, read_weights, write_weights
from segzoo.storage.save import save_pretrained
from segzoo.storage.specs import ChecksumError, WeightSpec

__all__ = [
    "save_pretrained", "WeightSpec", "ChecksumError", "WEIGHTS_NAME", "WeightsFile", "read_weights", "write_weights",
]
