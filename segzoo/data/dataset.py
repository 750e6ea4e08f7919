"""The segmentation dataset, the splits of a data config, and a collate function for images of different sizes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segzoo.core.errors import InvalidValueError, MissingFileError
from segzoo.data.config import DataConfig
from segzoo.data.masks import MaskDecoder, read_image
from segzoo.data.pairs import folder_pairs, list_file_pairs

__all__ = ["DataConfig", "SegmentationDataset", "pad_collate", "build_pairs", "make_loader", "resolve_data_root",
           "DATA_ENV"]

DATA_ENV = "SEGZOO_DATA"


def resolve_data_root(entry: str | os.PathLike) -> Path:
    """The folder a data root names: an absolute or existing path as given, else ``$SEGZOO_DATA/<entry>``
    (recipes name datasets, e.g. ``camvid``, not machine paths). Not found: an error listing where it looked."""
    path = Path(os.path.expandvars(str(entry))).expanduser()
    if path.is_absolute() or path.is_dir():
        return path
    base = os.environ.get(DATA_ENV)
    if base and (Path(base).expanduser() / path).is_dir():
        return Path(base).expanduser() / path
    looked = [str(Path.cwd() / path)] + ([str(Path(base).expanduser() / path)] if base else [])
    hint = "" if base else f" (${DATA_ENV} is not set: point it at the folder holding the datasets)"
    raise MissingFileError(f"data root {str(entry)!r} not found; looked in {looked}{hint}")


def _split(pairs: list[tuple[Path, Path]], fraction: float) -> tuple[list, list]:
    """A split that depends only on file names (stable across machines and runs)."""
    def key(pair):
        return hashlib.sha1(str(pair[0].name + pair[0].parent.parent.name).encode()).hexdigest()

    ordered = sorted(pairs, key=key)
    n_val = max(1, round(len(ordered) * fraction)) if len(ordered) > 1 else 0
    return sorted(ordered[n_val:]), sorted(ordered[:n_val])


def build_pairs(config: DataConfig, split: str) -> list[tuple[Path, Path]]:
    """The (image, mask) pairs of ``split`` ("train" or "val")."""
    if split not in ("train", "val"):
        raise InvalidValueError(f"split must be 'train' or 'val', got {split!r}")
    if config.layout == "list":
        list_file = config.train_list if split == "train" else config.val_list
        if not list_file:
            raise InvalidValueError(f"layout 'list' needs {split}_list")
        pairs = list_file_pairs(resolve_data_root(config.root), list_file)
    elif config.layout == "folder":
        root = resolve_data_root(config.root)
        train, val = _split(folder_pairs(root, config.images, config.masks), config.val_fraction)
        pairs = train if split == "train" else val
    else:
        raise InvalidValueError(f"layout must be 'folder' or 'list', got {config.layout!r}")
    return pairs[: config.limit] if config.limit else pairs


class SegmentationDataset(torch.utils.data.Dataset):
    """Image / mask pairs through an albumentations pipeline.

    Augmentation is seeded per sample from ``(seed, epoch, index)``: the same
    sample gets the same augmentation whatever the worker count, process count
    or resume point, which is what makes resumed and distributed runs exact.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        decoder: MaskDecoder,
        transform: Any,
        seed: int = 0,
    ) -> None:
        if not pairs:
            raise InvalidValueError("the dataset is empty: no image/mask pairs")
        self.pairs = list(pairs)
        self.decoder = decoder
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        mask = self.decoder(mask_path)
        if image.shape[:2] != mask.shape[:2]:
            raise InvalidValueError(
                f"image {str(image_path)!r} is {image.shape[1]}x{image.shape[0]} but its mask "
                f"{str(mask_path)!r} is {mask.shape[1]}x{mask.shape[0]}"
            )
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, mask)``: uint8 ``(C, H, W)`` and uint8 ``(H, W)`` class ids."""
        image, mask = self.load(index)
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(
                int.from_bytes(hashlib.blake2b(f"{self.seed}/{self.epoch}/{index}".encode(), digest_size=4).digest(),
                               "little")
            )
        out = self.transform(image=image, mask=mask)
        # both stay uint8 (a byte per pixel through workers and copies); consumers widen on the device
        return out["image"].contiguous(), torch.as_tensor(np.asarray(out["mask"]))


def make_loader(dataset, batch_size: int, indices=None, num_workers: int = 0, shuffle: bool = False,
                drop_last: bool = False, ignore_index: int = 255, pin_memory: bool = False):
    """A DataLoader with segzoo's collate function (images of different sizes, masks padded with ignore)."""
    import functools

    sampler = None if indices is None else indices
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle if sampler is None else False,
        num_workers=num_workers, drop_last=drop_last, pin_memory=pin_memory,
        collate_fn=functools.partial(pad_collate, ignore_index=ignore_index),
    )


def pad_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]], ignore_index: int = 255):
    """Stack samples (uint8 images) of different sizes: images padded with 0, masks with ``ignore_index``
    (bottom / right)."""
    if len({img.shape for img, _ in batch}) == 1:  # equal sizes: default_collate stacks into shared memory
        return torch.utils.data.default_collate(list(batch))
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    images = torch.zeros(len(batch), batch[0][0].shape[0], h, w, dtype=batch[0][0].dtype)
    masks = torch.full((len(batch), h, w), ignore_index, dtype=batch[0][1].dtype)
    for i, (img, mask) in enumerate(batch):
        images[i, :, : img.shape[-2], : img.shape[-1]] = img
        masks[i, : mask.shape[-2], : mask.shape[-1]] = mask
    return images, masks
