"""A small synthetic multi-class dataset (shapes on textured backgrounds), written as real PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_shapes_dataset", "SHAPE_CLASSES"]

SHAPE_CLASSES = ["background", "disc", "square", "triangle"]
CLASS_COLOURS = {1: np.array([220.0, 80, 60]), 2: np.array([70, 200, 90]), 3: np.array([80, 110, 230])}


def _draw(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    base = rng.uniform(40, 140, 3)
    image = base + rng.normal(0, 18, (size, size, 3)) + 25 * np.sin(xx[..., None] / rng.uniform(4, 12))
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        kind = int(rng.integers(1, 4))
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        r = rng.uniform(0.08, 0.2) * size
        if kind == 1:
            region = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        elif kind == 2:
            region = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        else:
            region = (yy - cy <= r) & (yy - cy >= -r) & (np.abs(xx - cx) <= (yy - cy + r) / 2)
        colour = CLASS_COLOURS[kind] + rng.normal(0, 25, 3)  # a noisy hue per class, plus the shape itself
        image[region] = 0.7 * colour + 0.3 * image[region]
        mask[region] = kind
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_shapes_dataset(root: str | Path, n_images: int = 240, size: int = 96, seed: int = 0) -> Path:
    """``root/images/*.png`` + ``root/masks/*.png`` (class ids 0..3); returns ``root``."""
    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_images):
        image, mask = _draw(rng, size)
        Image.fromarray(image).save(root / "images" / f"shape_{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"shape_{i:04d}.png")
    return root
