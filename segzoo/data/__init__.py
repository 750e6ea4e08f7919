"""Data: dataset configs, pair discovery, mask decoding, albumentations presets, the dataset, normalisation,
palettes, synthetic data.
May import: core.
"""

from segzoo.data.dataset import (
    DataConfig,
    SegmentationDataset,
    build_pairs,
    pad_collate,
)
from segzoo.data.masks import MaskDecoder, read_image
from segzoo.data.normalize import normalize
from segzoo.data.pairs import folder_pairs, list_file_pairs
from segzoo.data.transforms import eval_preset, train_preset

__all__ = [
    "DataConfig",
    "MaskDecoder",
    "SegmentationDataset",
    "build_pairs",
    "eval_preset",
    "folder_pairs",
    "list_file_pairs",
    "normalize",
    "pad_collate",
    "read_image",
    "train_preset",
]
