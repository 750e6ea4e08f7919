"""A dataset's config: where it lives and how its masks encode classes (the ``data`` section of a recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field

from segzoo.core.errors import InvalidValueError
from segzoo.data.masks import MaskDecoder

__all__ = ["DataConfig"]


@dataclass
class DataConfig:
    """Where a dataset lives and how its masks encode classes.

    ``layout`` ``folder``: ``images/`` + ``masks/`` folders (any depth under ``root``),
    matched by stem; ``list``: ``list_file`` of ``image mask`` lines per split.
    ``colours`` maps class names to RGB for colour-coded masks; ``ignore_colours``
    lists colours to ignore. ``values`` maps raw mask values to class ids.
    """

    root: str
    classes: list[str]
    layout: str = "folder"
    images: str = "images"
    masks: str = "masks"
    train_list: str | None = None
    val_list: str | None = None
    val_fraction: float = 0.15
    ignore_index: int = 255
    colours: dict[str, list[int]] | None = None
    ignore_colours: list[list[int]] = field(default_factory=list)
    values: dict[int, int] | None = None
    palette: dict[str, list[int]] | None = None  # display colours of the classes (default: ``colours``)
    limit: int | None = None  # keep the first N pairs of each split (smoke runs)

    def __post_init__(self) -> None:
        if self.layout not in ("folder", "list"):
            raise InvalidValueError(f"data.layout must be 'folder' or 'list', got {self.layout!r}")
        fraction = self.val_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise InvalidValueError(f"data.val_fraction must be a share in (0, 1), e.g. 0.15, got {fraction!r}")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise InvalidValueError(f"data.classes must be distinct names, got {self.classes!r}")
        if not 0 <= self.ignore_index <= 255:
            raise InvalidValueError(f"data.ignore_index must be in 0..255 (masks are 8-bit), got {self.ignore_index!r}")
        if self.limit is not None and self.limit < 1:
            raise InvalidValueError(f"data.limit must be at least 1 (or null), got {self.limit!r}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_colours(self) -> list[list[int]] | None:
        """RGB per class for overlays and model cards: ``palette``, else the mask ``colours``, else None."""
        table = self.palette or self.colours
        if not table:
            return None
        missing = [name for name in self.classes if name not in table]
        if missing:
            raise InvalidValueError(f"data palette/colours lack classes {missing}; classes: {self.classes}")
        return [list(table[name]) for name in self.classes]

    def decoder(self) -> MaskDecoder:
        colours = None
        if self.colours:
            unknown = sorted(set(self.colours) - set(self.classes))
            if unknown:
                raise InvalidValueError(f"colour table names classes {unknown} that are not in classes {self.classes}")
            colours = {tuple(rgb): self.classes.index(name) for name, rgb in self.colours.items()}
            colours.update({tuple(rgb): self.ignore_index for rgb in self.ignore_colours})
        return MaskDecoder(self.num_classes, self.ignore_index, colours=colours, values=self.values)
