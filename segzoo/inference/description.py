"""Reading an exported file's description: untrusted metadata, checked against the graph it describes.

Every field (ONNX ``metadata_props``, OpenVINO ``rt_info``, a ``.pt2`` archive's ``segzoo_meta.json`` and
``segzoo_limits.json``) is bounded JSON, checked against a schema, then against what the graph itself says: its
class count, input channels and, for a graph of one fixed size, that size. A file that disagrees with its own graph
is refused by name, never run with wrong class names or windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segzoo.core.config import ModelConfig, ModelMeta, parse_config
from segzoo.core.errors import InvalidValueError
from segzoo.core.io import parse_json

__all__ = ["GraphFacts", "Description", "read_description", "read_limits", "MAX_SIDE", "MIN_FIXED_SIDE"]

META_KEY = "segzoo.meta"  # ModelMeta as JSON: classes, colours, preprocessing
INPUT_KEY = "segzoo.input"  # {"layout": "NCHW", "dtype": ..., "normalised": ...}
CONFIG_KEY = "segzoo.config"  # the ModelConfig the graph was exported from
VERSION_KEY = "segzoo.version"
SOURCE_KEY = "segzoo.source"  # {"source": what was loaded, "sha256": of that weights file}, when known
REPORT_KEY = "segzoo.quantization"  # an INT8 file's calibration and measurement report
KEYS = (META_KEY, INPUT_KEY, CONFIG_KEY, VERSION_KEY, SOURCE_KEY, REPORT_KEY)

INPUT_FLOAT = {"layout": "NCHW", "dtype": "float32", "normalised": True,
               "note": "RGB, normalised with the preprocessing in segzoo.meta: "
                       "((x / 255) * (hi - lo) + lo - mean) / std"}
INPUT_UINT8 = {"layout": "NCHW", "dtype": "uint8", "normalised": False,
               "note": "RGB 0..255; the graph normalises with the preprocessing in segzoo.meta"}

MAX_SIDE = 1 << 15  # no exported graph segzoo writes takes a side longer than this
MIN_FIXED_SIDE = 16  # the smallest fixed input segzoo exports (a model's divisor is at least 8)
_LIMIT_KEYS = {"dynamic", "min_side", "size", "in_channels"}


@dataclass(frozen=True)
class GraphFacts:
    """What a compiled graph says about itself, where it says it: classes of its output, channels and fixed
    (height, width) of its input (None: symbolic or unknown)."""

    num_classes: int | None = None
    in_channels: int | None = None
    static_size: tuple[int, int] | None = None


@dataclass
class Description:
    """An exported file's checked description."""

    meta: ModelMeta
    layout: dict[str, Any]
    num_classes: int
    report: dict[str, Any] = field(default_factory=dict)
    config: ModelConfig | None = None


def _error(where: str, key: str, message: str) -> InvalidValueError:
    return InvalidValueError(f"{where}: invalid segzoo metadata {key!r}: {message}")


def _side(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_SIDE


def _read_layout(props: dict[str, str], where: str) -> dict[str, Any]:
    if INPUT_KEY not in props:
        return dict(INPUT_FLOAT)
    layout = parse_json(props[INPUT_KEY], f"{where}: segzoo metadata {INPUT_KEY!r}", 1 << 12)
    unknown = sorted(set(layout) - set(INPUT_FLOAT))
    if unknown:
        raise _error(where, INPUT_KEY, f"unknown key(s) {unknown}; expected some of {sorted(INPUT_FLOAT)}")
    if layout.get("layout", "NCHW") != "NCHW":
        raise _error(where, INPUT_KEY, f"layout {layout.get('layout')!r}, expected 'NCHW'")
    if layout.get("dtype") not in ("float32", "uint8"):
        raise _error(where, INPUT_KEY, f"input dtype {layout.get('dtype')!r}, expected float32 or uint8")
    if not isinstance(layout.get("normalised", True), bool) or not isinstance(layout.get("note", ""), str):
        raise _error(where, INPUT_KEY, "'normalised' must be true or false and 'note' a string")
    return layout


def _read_report(props: dict[str, str], where: str, graph: GraphFacts) -> dict[str, Any]:
    report = parse_json(props.get(REPORT_KEY, "{}"), f"{where}: segzoo metadata {REPORT_KEY!r}")
    size = report.get("fixed_size")
    if size is None:
        return report
    if not (isinstance(size, list) and len(size) == 2 and all(_side(v, MIN_FIXED_SIDE) for v in size)):
        raise _error(where, REPORT_KEY, f"fixed_size must be [height, width] of integers in "
                                        f"{MIN_FIXED_SIDE}..{MAX_SIDE}, got {size!r}"[:300])
    if graph.static_size is None:
        raise _error(where, REPORT_KEY, f"fixed_size {size} for a graph that takes any input size")
    if tuple(size) != graph.static_size:
        raise _error(where, REPORT_KEY, f"fixed_size {size}, but the graph's input is "
                                        f"{graph.static_size[0]}x{graph.static_size[1]}")
    return report


def _number_of_classes(graph: GraphFacts, config: ModelConfig | None, where: str) -> int:
    if config is not None and graph.num_classes is not None and config.num_classes != graph.num_classes:
        raise _error(where, CONFIG_KEY, f"num_classes {config.num_classes}, but the graph outputs "
                                        f"{graph.num_classes} classes")
    if config is not None and graph.in_channels is not None and config.encoder.in_channels != graph.in_channels:
        raise _error(where, CONFIG_KEY, f"in_channels {config.encoder.in_channels}, but the graph's input has "
                                        f"{graph.in_channels} channels")
    number = graph.num_classes if graph.num_classes is not None else config.num_classes if config else None
    if number is None:
        raise InvalidValueError(f"{where}: neither the graph nor its segzoo metadata says how many classes it "
                                "predicts")
    return number


def read_description(props: dict[str, str], where: str, graph: GraphFacts) -> Description:
    """The checked description in an export's metadata ``props``; no segzoo metadata, a field that fails its
    schema or disagrees with ``graph`` is one ``InvalidValueError`` naming ``where`` and the key."""
    if META_KEY not in props:
        raise InvalidValueError(f"{where} carries no segzoo metadata (key {META_KEY!r}): it was not written by "
                                "segzoo export / quantize, so its classes and preprocessing are unknown")
    for key in KEYS:
        if key in props and not isinstance(props[key], str):
            raise _error(where, key, f"expected text, got {type(props[key]).__name__}")
    what = f"{where}: segzoo metadata {META_KEY!r}"
    meta = parse_config(ModelMeta, parse_json(props[META_KEY], what), what)
    layout = _read_layout(props, where)
    config = ModelConfig.from_json(props[CONFIG_KEY], f"{where}: segzoo metadata {CONFIG_KEY!r}"
                                   ) if CONFIG_KEY in props else None
    if SOURCE_KEY in props:
        source = parse_json(props[SOURCE_KEY], f"{where}: segzoo metadata {SOURCE_KEY!r}", 1 << 14)
        if not all(isinstance(v, str) for v in source.values()):
            raise _error(where, SOURCE_KEY, "expected a mapping of strings ('source', 'sha256')")
    if len(props.get(VERSION_KEY, "")) > 100:
        raise _error(where, VERSION_KEY, "a version is at most 100 characters")
    num_classes = _number_of_classes(graph, config, where)
    report = _read_report(props, where, graph)
    try:
        meta.check(num_classes, graph.in_channels if layout.get("dtype") == "uint8" else None)
    except InvalidValueError as exc:
        raise _error(where, META_KEY, str(exc)) from None
    return Description(meta, layout, num_classes, report, config)


def read_limits(text: str, where: str, graph: GraphFacts) -> dict[str, Any]:
    """The input sizes a ``.pt2`` program accepts (``segzoo_limits.json``), bounded, schema-checked and checked
    against the program's own input."""
    if not text:
        return {}
    limits = parse_json(text, f"{where}: segzoo_limits.json", 1 << 12)
    unknown = sorted(set(limits) - _LIMIT_KEYS)
    if unknown:
        raise _error(where, "segzoo_limits.json", f"unknown key(s) {unknown}; expected some of {sorted(_LIMIT_KEYS)}")
    size, low = limits.get("size"), limits.get("min_side")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(_side(v, 1) for v in size)):
        raise _error(where, "segzoo_limits.json", f"size must be [height, width] of integers in 1..{MAX_SIDE}, got "
                                                  f"{size!r}"[:300])
    if size is not None and graph.static_size is not None and tuple(size) != graph.static_size:
        raise _error(where, "segzoo_limits.json", f"size {size}, but the program's input is "
                                                  f"{graph.static_size[0]}x{graph.static_size[1]}")
    if low is not None and not _side(low, 1):
        raise _error(where, "segzoo_limits.json", f"min_side must be an integer in 1..{MAX_SIDE}, got {low!r}"[:300])
    channels = limits.get("in_channels")
    if channels is not None and graph.in_channels is not None and channels != graph.in_channels:
        raise _error(where, "segzoo_limits.json", f"in_channels {channels!r}, but the program's input has "
                                                  f"{graph.in_channels} channels")
    return limits
