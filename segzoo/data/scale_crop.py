"""RandomScaleCrop: random scale then a fixed-size crop (optionally centred on rare classes), resampling only the
window that lands in the crop. Imported on first use: it needs albumentations."""

from __future__ import annotations

import albumentations as A
import numpy as np

from segzoo.core.errors import InvalidValueError
from segzoo.data.masks import _cv2

__all__ = ["RandomScaleCrop"]


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
