"""Models: the segmentation model, the factory that turns a config into one, and the named reference designs
(``segzoo.create`` and ``segzoo.from_pretrained``, which also load weights, live in ``segzoo.api``)."""

from segzoo.models import named as _named  # noqa: F401  (registers the named models)
from segzoo.models.factory import (
    apply_overrides,
    build_model,
    create_model,
    named_config,
)
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["SegmentationModel", "apply_overrides", "build_model", "create_model", "named_config"]
