"""Models: the segmentation model, its factory and the named reference designs."""

from segzoo.models import named as _named  # noqa: F401  (registers the named models)
from segzoo.models.factory import apply_overrides, build_model, create, create_model, named_config
from segzoo.models.segmentation_model import SegmentationModel

__all__ = ["SegmentationModel", "apply_overrides", "build_model", "create", "create_model", "named_config"]
