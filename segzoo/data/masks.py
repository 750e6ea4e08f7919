"""Reading images and masks: class-id masks (with an optional value map) or RGB colour-coded masks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from segzoo.core.errors import InvalidValueError

__all__ = ["read_image", "MaskDecoder", "mask_kind"]


def _cv2():
    """OpenCV, single-threaded: its thread pool does not survive the fork that starts DataLoader workers
    (a worker hangs on first use), and parallelism comes from the workers anyway."""
    import cv2

    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)
    return cv2


PIXELS_ENV = "SEGZOO_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 150_000_000  # 150 megapixels (12000 x 12500, 450 MB as RGB), under PIL's own bomb error


def max_image_pixels() -> int:
    """The most pixels an image or mask may have before it is decoded (``$SEGZOO_MAX_IMAGE_PIXELS``, default 150
    million): a small file that claims a huge size is refused instead of exhausting the memory."""
    text = os.environ.get(PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidValueError(f"${PIXELS_ENV} must be a positive number of pixels, got {text!r}")
    return value


def _check_size(path: Path, what: str) -> None:
    """Read the size from the file's header (nothing is decoded) and refuse images above the pixel limit."""
    from PIL import Image, UnidentifiedImageError

    limit = max_image_pixels()
    guard = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only the header is read here: segzoo's own limit applies, below
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError):
        return  # not a format PIL reads headers of: the decoder below names the problem
    finally:
        Image.MAX_IMAGE_PIXELS = guard
    if width * height > limit:
        raise InvalidValueError(f"{what} {str(path)!r} is {width}x{height} ({width * height / 1e6:.0f} megapixels), "
                                f"above the limit of {limit / 1e6:.0f} megapixels (${PIXELS_ENV}); split it into "
                                "tiles, or raise the limit if the machine has the memory")


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 array (H, W, 3) of the pixels as stored: EXIF orientation is ignored, as for masks, so that
    an image and its mask always share one pixel grid. A corrupt or unreadable file, or one above the pixel
    limit (:func:`max_image_pixels`), is an error naming it."""
    cv2 = _cv2()

    path = Path(path)
    if path.is_file():
        _check_size(path, "image")
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(data, flags) if data is not None and data.size else None
    if image is None:
        raise InvalidValueError(f"cannot read image {str(path)!r}: missing, empty or corrupt")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _open_mask(path: Path):
    from PIL import Image, UnidentifiedImageError

    _check_size(Path(path), "mask")
    try:
        image = Image.open(path)
        image.load()
        return image
    except Image.DecompressionBombError as exc:
        raise InvalidValueError(f"mask {str(path)!r} is too large to decode safely: {exc}") from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InvalidValueError(f"cannot read mask {str(path)!r}: {exc}") from exc


class MaskDecoder:
    """Turns a mask file into class ids (uint8, ``ignore_index`` for ignored pixels).

    ``colours``: RGB colour -> class id (or ``ignore_index``) for colour-coded masks;
    palette PNGs are converted to RGB first, since their index order may differ per file.
    ``values``: raw id -> class id for class-id masks (e.g. nuclei's 255 -> 1).
    Any value outside the classes that is not the ignore index is an error naming
    the file and the values.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        colours: Mapping[Sequence[int], int] | None = None,
        values: Mapping[int, int] | None = None,
    ) -> None:
        if not 1 <= num_classes <= 255 or not 0 <= ignore_index <= 255:
            raise InvalidValueError(
                f"masks are uint8: need 1..255 classes and an ignore index in 0..255, "
                f"got {num_classes} classes and ignore index {ignore_index}"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.colours = {tuple(int(c) for c in k): int(v) for k, v in (colours or {}).items()}
        self.values = {int(k): int(v) for k, v in (values or {}).items()}
        if colours and values:
            raise InvalidValueError("a mask decoder takes colours or values, not both")
        for raw, class_id in self.values.items():
            if not 0 <= raw <= 65535 or not (0 <= class_id < num_classes or class_id == ignore_index):
                raise InvalidValueError(
                    f"mask value map entry {raw}: {class_id}: raw values are 0..65535 (8- or 16-bit masks) and "
                    f"class ids 0..{num_classes - 1} or the ignore index {ignore_index}"
                )

    def __call__(self, path: Path) -> np.ndarray:
        image = _open_mask(path)
        if self.colours:
            return self._from_colours(np.asarray(image.convert("RGB")), path)
        if image.mode not in ("L", "P", "I", "I;16", "1"):
            raise InvalidValueError(
                f"mask {str(path)!r} is {image.mode}, expected single-channel class ids; "
                "for colour-coded masks give the colour table"
            )
        ids = np.array(image)  # a writable copy: PIL gives read-only arrays, which torch warns about
        plain = ids.dtype == np.uint8 and (ids.max(initial=0) < self.num_classes or self._only_ignore(ids))
        if not self.values and plain:
            return ids  # the common case: every value is a class id or the ignore index
        ids = ids.astype(np.int64)
        if self.values:
            size = max(int(ids.max(initial=0)), max(self.values)) + 1
            lut = np.full(size, -1, dtype=np.int64)
            lut[list(self.values)] = list(self.values.values())
            mapped = lut[ids]
            if (mapped < 0).any():
                raise InvalidValueError(
                    f"mask {str(path)!r} has values {sorted(np.unique(ids[mapped < 0]).tolist())[:10]} "
                    f"not in the value map {self.values}"
                )
            ids = mapped
        bad = ((ids >= self.num_classes) & (ids != self.ignore_index)) | (ids < 0)
        if bad.any():
            raise InvalidValueError(
                f"mask {str(path)!r} has values {sorted(np.unique(ids[bad]).tolist())[:10]} outside the "
                f"{self.num_classes} classes (0..{self.num_classes - 1}) and not the ignore index {self.ignore_index}"
            )
        return ids.astype(np.uint8)

    def _only_ignore(self, ids: np.ndarray) -> bool:
        """True if every value is a class id or the ignore index (a cheap check for uint8 masks)."""
        counts = np.bincount(ids.ravel(), minlength=256)
        counts[: self.num_classes] = 0
        if 0 <= self.ignore_index < 256:
            counts[self.ignore_index] = 0
        return not counts.any()

    def _from_colours(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        code = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        keys = np.array([(r << 16) | (g << 8) | b for r, g, b in self.colours], dtype=np.int64)
        ids = np.array(list(self.colours.values()), dtype=np.int64)
        order = np.argsort(keys)
        keys, ids = keys[order], ids[order]
        pos = np.clip(np.searchsorted(keys, code), 0, len(keys) - 1)
        found = keys[pos] == code
        if not found.all():
            unknown = np.unique(code[~found])[:5]
            colours = [((int(c) >> 16) & 255, (int(c) >> 8) & 255, int(c) & 255) for c in unknown]
            raise InvalidValueError(
                f"mask {str(path)!r} has colours {colours} ({int((~found).sum())} pixels) not in the colour table"
            )
        return ids[pos].astype(np.uint8)


def mask_kind(path: Path, class_colours: Sequence[Sequence[int]] | None) -> str:
    """How a mask file encodes classes, as far as the file tells: ``"colours"`` for RGB(A) masks, and for palette
    masks whose palette holds exactly the given class colours; ``"ids"`` for single-channel masks and other
    palette masks (the index is the class, as in Pascal VOC)."""
    image = _open_mask(path)
    if image.mode in ("RGB", "RGBA"):
        return "colours"
    if image.mode == "P" and class_colours:
        used = [int(i) for i in np.unique(np.asarray(image))]
        table = np.asarray(image.getpalette() or [], dtype=np.int64).reshape(-1, 3)
        known = {tuple(int(v) for v in rgb) for rgb in class_colours}
        if used and all(i < len(table) and tuple(int(v) for v in table[i]) in known for i in used):
            return "colours"
    return "ids"
