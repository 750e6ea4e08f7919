"""Class colours for overlays, plots and model cards (no plotting library needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segzoo.core.errors import InvalidValueError

__all__ = ["palette", "draw_legend", "IGNORE_COLOUR"]

IGNORE_COLOUR = (255, 255, 255)
# Distinct colours for classes without published ones (class 0 dark, then a 20-colour categorical cycle)
_DEFAULT = np.array(
    [(30, 30, 30), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
     (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (31, 119, 180), (174, 199, 232),
     (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210),
     (219, 219, 141), (158, 218, 229)],
    dtype=np.uint8,
)


def palette(num_classes: int, class_colours: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """``(num_classes + 1, 3)`` uint8: a colour per class (``class_colours`` where given, e.g. a dataset's
    published palette from the model's metadata), the last row for ignored pixels."""
    if class_colours is not None:
        colours = np.asarray(class_colours, dtype=np.int64)
        if colours.shape != (num_classes, 3) or colours.min() < 0 or colours.max() > 255:
            raise InvalidValueError(f"class colours must be {num_classes} RGB triples in 0..255, got {class_colours!r}")
        colours = colours.astype(np.uint8)
    else:
        colours = _DEFAULT[np.arange(num_classes) % len(_DEFAULT)]
    return np.concatenate([colours, np.array([IGNORE_COLOUR], np.uint8)])


def draw_legend(image: np.ndarray, names: Sequence[str], colours: np.ndarray,
                present: Sequence[int] | None = None) -> np.ndarray:
    """``image`` (H, W, 3 uint8) with a class legend in its top-left corner: a swatch and the name of each class
    in ``present`` (all classes when None), on a translucent panel, its text scaled to the image (Pillow only)."""
    from PIL import Image, ImageDraw, ImageFont

    rows = [int(i) for i in (range(len(names)) if present is None else present) if 0 <= int(i) < len(names)]
    if not rows:
        return image
    height, width = image.shape[:2]
    size = max(10, min(height, width) // 28)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = ImageFont.load_default()
    canvas = Image.fromarray(image).convert("RGBA")
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    pad, line = size // 2, size + size // 3
    text_w = max(draw.textlength(names[i], font=font) for i in rows)
    panel = (0, 0, int(min(width, 3 * pad + size + text_w)), int(min(height, 2 * pad + line * len(rows))))
    draw.rectangle(panel, fill=(0, 0, 0, 150))
    for k, i in enumerate(rows):
        top = pad + k * line
        if top + size > height:
            break
        draw.rectangle((pad, top, pad + size, top + size), fill=tuple(int(v) for v in colours[i]) + (255,),
                       outline=(255, 255, 255, 255))
        draw.text((2 * pad + size, top), names[i], fill=(255, 255, 255, 255), font=font)
    return np.asarray(Image.alpha_composite(canvas, layer).convert("RGB"))
