"""Where published weights come from: a ``WeightSpec`` per tag of a named model (a file in the repository, a URL
or a Hub repo, pinned by sha256). Plain data, so that named models can declare their weights without the storage
layer; ``segzoo.storage.specs`` resolves them to files."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from segzoo.core.errors import InvalidValueError

__all__ = ["WeightSpec", "published", "url_hash_prefix"]

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.[^/]*$")


def url_hash_prefix(url: str) -> str | None:
    """The sha256 prefix a download's file name carries, torch.hub's convention
    (``deeplabv3_resnet50_coco-cd0a2569.pth``: the file's sha256 starts with ``cd0a2569``), or None."""
    found = _HASH_IN_NAME.search(url.split("?")[0].rsplit("/", 1)[-1])
    return found.group(1) if found else None


@dataclass(frozen=True)
class WeightSpec:
    """One published tag of a named model.

    Exactly one of ``file``, ``url``, ``hub`` is set. ``sha256`` pins the file
    (for ``convert`` specs: the original checkpoint; a URL whose file name carries a sha256 prefix is checked
    against it); ``convert`` names the importer that turns a foreign checkpoint (or, for ``hub``, a transformers
    repo) into segzoo weights. ``class_names`` name the classes where the checkpoint does not.
    """

    tag: str
    file: str | None = None
    url: str | None = None
    hub: str | None = None
    sha256: str | None = None
    convert: str | None = None
    dataset: str | None = None
    license: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    description: str = ""
    size: int | None = None  # bytes of the file or download, where known: a download may not exceed it
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        sources = [s for s in (self.file, self.url, self.hub) if s]
        if len(sources) != 1:
            raise InvalidValueError(f"weight spec {self.tag!r} needs exactly one of file, url, hub; got {sources}")
        if (self.file or (self.url and not self.convert)) and not self.sha256:
            raise InvalidValueError(f"weight spec {self.tag!r}: files and URLs of segzoo weights must pin a sha256")


def published(*specs: WeightSpec) -> dict[str, WeightSpec]:
    """The ``weights=`` metadata of ``register_model``: tags in order, the first is the default."""
    tags = [s.tag for s in specs]
    if len(set(tags)) != len(tags):
        raise InvalidValueError(f"duplicate weight tags {tags}")
    return {s.tag: s for s in specs}
