"""albumentations presets, applied jointly to image and mask; serialisable with ``A.to_dict``.

Masks are only ever resampled with nearest neighbour (albumentations' mask
interpolation default, set explicitly here), and every geometric transform
applies to image and mask together. Presets end in uint8 CHW tensors:
normalisation happens batched on the device (``segzoo.data.normalize``) with the
model's ``Preprocessing``, which is saved with its weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segzoo.core.errors import InvalidValueError

__all__ = ["train_preset", "eval_preset", "eval_preset_from_record", "to_dict", "from_dict"]


def _random_scale_crop_class():
    """The class, imported on first use so that importing segzoo does not import albumentations (importing it
    also registers it for albumentations' (de)serialisation)."""
    from segzoo.data.scale_crop import RandomScaleCrop

    return RandomScaleCrop


def __getattr__(name: str) -> Any:
    """``from segzoo.data.transforms import RandomScaleCrop`` works before any preset was built (PEP 562)."""
    if name == "RandomScaleCrop":
        return _random_scale_crop_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train_preset(
    crop_size: int | tuple[int, int] = 512,
    scale: tuple[float, float] = (0.5, 2.0),
    hflip: bool = True,
    vflip: bool = False,
    colour_jitter: float = 0.2,
    ignore_index: int = 255,
    rotate90: bool = False,
    focus_classes: tuple[int, ...] = (),
    focus_p: float = 0.0,
):
    """Random scale + crop (padding image with 0, mask with ``ignore_index``), flips, colour jitter,
    to uint8 tensors. ``rotate90`` adds random quarter turns (for overhead imagery, which has no "up");
    it needs a square crop so that every batch keeps one shape. ``focus_p`` of the crops are placed over
    a pixel of one of ``focus_classes`` (class ids) present in the mask (see ``RandomScaleCrop``)."""
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    h, w = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    if rotate90 and h != w:
        raise InvalidValueError(f"rotate90 needs a square crop, got crop_size {h}x{w}")
    ops: list[Any] = [_random_scale_crop_class()(h, w, scale, fill_mask=ignore_index,
                                                 focus_classes=tuple(focus_classes), focus_p=focus_p)]
    if hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    if vflip:
        ops.append(A.VerticalFlip(p=0.5))
    if rotate90:
        ops.append(A.RandomRotate90(p=1.0))
    if colour_jitter:
        c = colour_jitter
        ops.append(A.ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(c / 4, 0.5), p=0.8))
    ops.append(ToTensorV2())
    return A.Compose(ops)


def eval_preset(max_size: int | None = None):
    """To uint8 tensors; ``max_size`` resizes the longest side (the mask with nearest neighbour)."""
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    from segzoo.data.masks import _cv2

    cv2 = _cv2()
    ops: list[Any] = []
    if max_size:
        ops.append(A.LongestMaxSize(max_size=max_size, interpolation=cv2.INTER_LINEAR,
                                    mask_interpolation=cv2.INTER_NEAREST))
    ops.append(ToTensorV2())
    return A.Compose(ops)


def to_dict(transform) -> dict[str, Any]:
    import albumentations as A

    _random_scale_crop_class()  # registered for (de)serialisation
    return A.to_dict(transform)


def from_dict(data: dict[str, Any]):
    import albumentations as A

    _random_scale_crop_class()
    return A.from_dict(data)


def eval_preset_from_record(record: Any, where: str):
    """The evaluation transform a ``transforms.json`` beside weights names, rebuilt with :func:`eval_preset`: the
    file may hold only what segzoo writes there (an optional ``LongestMaxSize`` then ``ToTensorV2``); any other
    transform, parameter or shape is one ``InvalidValueError`` naming ``where``."""
    from segzoo.core.errors import InvalidValueError

    def refuse(what: str) -> InvalidValueError:
        return InvalidValueError(f"{where} (the evaluation transform saved beside the weights) is not one segzoo "
                                 f"writes: {what}; fix or delete it (the default transform is then used)")

    if not isinstance(record, dict) or not isinstance(record.get("eval"), dict):
        raise refuse("expected an object with an 'eval' transform")
    compose = record["eval"].get("transform")
    steps = compose.get("transforms") if isinstance(compose, dict) else None
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        raise refuse("expected eval.transform.transforms, a list of transforms")
    names = [step.get("__class_fullname__") for step in steps]
    if names not in (["ToTensorV2"], ["LongestMaxSize", "ToTensorV2"]):
        raise refuse(f"transforms {names}, expected ['ToTensorV2'] or ['LongestMaxSize', 'ToTensorV2']")
    if len(steps) == 1:
        return eval_preset()
    size = steps[0].get("max_size")
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 1 << 15:
        raise refuse(f"LongestMaxSize max_size {size!r}, expected an integer in 16..{1 << 15}")
    return eval_preset(size)


def apply(transform, image: np.ndarray, mask: np.ndarray | None = None):
    """Run a preset on an image (and mask); returns ``(image_tensor, mask_tensor_or_None)``."""
    if mask is None:
        out = transform(image=image)
        return out["image"], None
    out = transform(image=image, mask=mask)
    return out["image"], out["mask"]
