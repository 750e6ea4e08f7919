"""Finding image / mask pairs on disk: folder pairs matched by stem, or a list file."""

from __future__ import annotations

from pathlib import Path

from segzoo.core.errors import InvalidValueError, MissingFileError

__all__ = ["IMAGE_SUFFIXES", "folder_pairs", "direct_pairs", "list_file_pairs"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"}


def _images_in(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in files:
                raise InvalidValueError(f"{str(folder)!r} holds two files with the stem {path.stem!r}: "
                                        f"{files[path.stem].name}, {path.name}")
            files[path.stem] = path
    return files


def _matched(image_dir: Path, mask_dir: Path, where: str) -> list[tuple[Path, Path]]:
    """The files of two folders paired by stem; unmatched files are an error that lists them."""
    imgs, msks = _images_in(image_dir), _images_in(mask_dir)
    lonely_images = sorted(set(imgs) - set(msks))
    lonely_masks = sorted(set(msks) - set(imgs))
    if lonely_images or lonely_masks:
        raise InvalidValueError(
            f"unmatched files in {where!r}: images without a mask "
            f"{[imgs[s].name for s in lonely_images[:10]]}, masks without an image "
            f"{[msks[s].name for s in lonely_masks[:10]]}"
            + (" (more not shown)" if len(lonely_images) + len(lonely_masks) > 20 else "")
        )
    return [(imgs[s], msks[s]) for s in sorted(imgs)]


def direct_pairs(images: str | Path, masks: str | Path) -> list[tuple[Path, Path]]:
    """Every image of the folder ``images`` with the mask of the same stem in the folder ``masks`` (e.g. CamVid's
    ``test/`` and ``testannot/``); unmatched files are an error that lists them."""
    images, masks = Path(images), Path(masks)
    for what, folder in (("images", images), ("masks", masks)):
        if not folder.is_dir():
            raise MissingFileError(f"--{what} {str(folder)!r} is not a folder")
    pairs = _matched(images, masks, f"{images} + {masks}")
    if not pairs:
        raise InvalidValueError(f"no images in {str(images)!r} ({sorted(IMAGE_SUFFIXES)})")
    return pairs


def folder_pairs(root: str | Path, images: str = "images", masks: str = "masks") -> list[tuple[Path, Path]]:
    """Pairs from every ``<dir>/<images>`` folder under ``root`` with a sibling ``<dir>/<masks>`` folder.

    Files are matched by stem (``a.jpg`` with ``a.png``). Unmatched files are an
    error that lists them: silently dropping half a dataset is worse than stopping.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"dataset root {str(root)!r} is not a folder")
    image_dirs = sorted(p for p in [root / images, *root.rglob(images)] if p.is_dir())
    image_dirs = sorted(set(image_dirs))
    pairs: list[tuple[Path, Path]] = []
    for image_dir in image_dirs:
        mask_dir = image_dir.parent / masks
        if not mask_dir.is_dir():
            raise MissingFileError(f"{str(image_dir)!r} has no sibling masks folder {str(mask_dir)!r}")
        pairs += _matched(image_dir, mask_dir, str(image_dir.parent))
    if not pairs:
        raise InvalidValueError(
            f"no image/mask pairs under {str(root)!r} "
            f"(looked for '{images}/' + '{masks}/' folders)"
        )
    return pairs


def _resolve(root: Path, entry: str, list_file: Path, line_no: int) -> Path:
    """An entry of a list file: relative to the root, or an absolute path whose prefix may be stale."""
    path = Path(entry)
    if not path.is_absolute() and (root / path).is_file():
        return root / path
    if path.is_file():
        return path
    parts = path.parts
    for k in range(1, len(parts)):  # stale prefix: keep the longest tail that exists under the root
        candidate = root.joinpath(*parts[k:])
        if candidate.is_file():
            return candidate
    raise MissingFileError(f"{str(list_file)}:{line_no}: {entry!r} not found under {str(root)!r}")


def list_file_pairs(root: str | Path, list_file: str) -> list[tuple[Path, Path]]:
    """Pairs from a list file of ``image mask`` lines (CamVid style); paths resolve relative to ``root``."""
    root = Path(root)
    path = root / list_file
    if not path.is_file():
        raise MissingFileError(f"list file {str(path)!r} does not exist")
    pairs = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise InvalidValueError(f"{str(path)}:{line_no}: expected 'image mask', got {line!r}")
        pairs.append((_resolve(root, fields[0], path, line_no), _resolve(root, fields[1], path, line_no)))
    if not pairs:
        raise InvalidValueError(f"list file {str(path)!r} lists no pairs")
    return pairs
