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

__all__ = ["train_preset", "eval_preset", "to_dict", "from_dict", "RandomScaleCrop"]


def _random_scale_crop_class():
    """Defined lazily so that importing segzoo does not import albumentations."""
    global RandomScaleCrop
    if "RandomScaleCrop" in globals():
        return RandomScaleCrop
    import albumentations as A

    from segzoo.data.masks import _cv2

    class RandomScaleCrop(A.DualTransform):
        """Random scale in ``scale``, then a random ``height`` x ``width`` crop, padding where the scaled
        image is smaller (image with 0, mask with ``fill_mask``).

        The result of RandomScale + PadIfNeeded + RandomCrop (up to sub-pixel rounding of the window),
        computed by resampling only the source window that lands in the crop: the cost is that of the
        output, not of the whole image scaled up to 2x.

        Class-aware crops: with probability ``focus_p`` the crop is placed over a random pixel of one of
        the ``focus_classes`` present in the mask (the class drawn uniformly among those present, the pixel
        anywhere in the crop), so that classes covering a small share of few images are seen in many
        steps rather than in the rare uniform crop that happens to hit them. A mask holding none of them
        gets a uniform crop.
        """

        def __init__(self, height: int, width: int, scale: tuple[float, float] = (0.5, 2.0),
                     fill_mask: int = 255, focus_classes: tuple[int, ...] = (), focus_p: float = 0.0,
                     p: float = 1.0) -> None:
            super().__init__(p=p)
            self.height, self.width = int(height), int(width)
            self.scale = (float(scale[0]), float(scale[1]))
            self.fill_mask = int(fill_mask)
            self.focus_classes = tuple(int(c) for c in focus_classes)
            self.focus_p = float(focus_p)
            if not 0.0 <= self.focus_p <= 1.0:
                raise InvalidValueError(f"focus_p must be in [0, 1], got {focus_p!r}")
            if self.focus_p and not self.focus_classes:
                raise InvalidValueError(f"focus_p {focus_p!r} needs focus_classes (the class ids to centre crops on)")

        def _focus_pixel(self, mask) -> tuple[int, int] | None:
            """A random pixel ``(y, x)`` of a focus class present in ``mask``, or None."""
            if mask is None or not self.focus_classes or self.py_random.random() >= self.focus_p:
                return None
            flat = np.asarray(mask).reshape(-1)
            counts = np.bincount(flat, minlength=max(self.focus_classes) + 1)
            present = [c for c in self.focus_classes if counts[c]]
            if not present:
                return None
            cls = present[self.py_random.randrange(len(present))]
            where = np.flatnonzero(flat == cls)
            y, x = divmod(int(where[self.py_random.randrange(where.size)]), mask.shape[1])
            return y, x

        def get_params_dependent_on_data(self, params, data):
            h, w = params["shape"][:2]
            s = self.py_random.uniform(*self.scale)
            sh, sw = max(1, round(h * s)), max(1, round(w * s))  # the scaled image's size
            focus = self._focus_pixel(data.get("mask"))
            if focus is None:
                top = self.py_random.randint(0, max(0, sh - self.height))
                left = self.py_random.randint(0, max(0, sw - self.width))
            else:  # the focus pixel at a random place inside the crop, the crop kept inside the image
                fy, fx = int(focus[0] * s), int(focus[1] * s)
                top = min(max(0, fy - self.py_random.randint(0, self.height - 1)), max(0, sh - self.height))
                left = min(max(0, fx - self.py_random.randint(0, self.width - 1)), max(0, sw - self.width))
            out_h, out_w = min(self.height, sh - top), min(self.width, sw - left)
            # the source window that maps onto the output region; only it is resampled
            y0, x0 = int(top / s), int(left / s)
            y1, x1 = min(h, max(y0 + 1, round((top + out_h) / s))), min(w, max(x0 + 1, round((left + out_w) / s)))
            return {"window": (y0, y1, x0, x1), "out": (out_h, out_w)}

        def _scale_crop(self, img, window, out, interpolation, fill):
            cv2 = _cv2()
            y0, y1, x0, x1 = window
            out_h, out_w = out
            region = cv2.resize(img[y0:y1, x0:x1], (out_w, out_h), interpolation=interpolation)
            if (out_h, out_w) == (self.height, self.width):
                return region
            return cv2.copyMakeBorder(region, 0, self.height - out_h, 0, self.width - out_w,
                                      cv2.BORDER_CONSTANT, value=fill)

        def apply(self, img, window=None, out=None, **params):
            return self._scale_crop(img, window, out, _cv2().INTER_LINEAR, 0)

        def apply_to_mask(self, mask, window=None, out=None, **params):
            return self._scale_crop(mask, window, out, _cv2().INTER_NEAREST, self.fill_mask)

        def get_transform_init_args_names(self):
            return ("height", "width", "scale", "fill_mask", "focus_classes", "focus_p")

    RandomScaleCrop.__module__ = __name__
    globals()["RandomScaleCrop"] = RandomScaleCrop
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
