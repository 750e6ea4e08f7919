"""Choosing the runtime by measure on the CPU at hand, for INT8 (:func:`quantize_fastest`) and fp32
(:func:`export_fastest`): which of onnxruntime, OpenVINO and PyTorch is faster depends on the CPU (on a VNNI / AMX
Xeon OpenVINO INT8 ran 1.6-2.7x onnxruntime INT8 for the zoo's weights; of two AVX2-only EPYCs, INT8 was no faster
than fp32 on one and well ahead of it on the other; docs/deploy.md), so instead of a rule per instruction set
each candidate is written, timed on the same input in its own fresh process (timed one after the other in one
process, runtimes change each other's speed), and the fastest file is kept.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from segzoo.core.errors import InvalidValueError
from segzoo.core.extras import install_hint
from segzoo.core.io import check_output
from segzoo.core.timing import median_ms_in_own_process
from segzoo.models.segmentation_model import SegmentationModel
from segzoo.storage.manifest import INT8_BACKENDS

__all__ = ["quantize_fastest", "export_fastest", "int8_gains", "SUFFIXES"]

SUFFIXES = {"onnxruntime": ".onnx", "openvino": ".xml"}
LOADERS = {"onnxruntime": "segzoo.inference.runtime:OnnxModel.load",
           "openvino": "segzoo.inference.runtime:OpenVinoModel.load"}


def quantize_fastest(model: SegmentationModel, calibration: Iterable[Any], stem: str | Path, *,
                     options: Mapping[str, Mapping[str, Any]] | None = None,
                     example_size: tuple[int, int] = (256, 320), repeats: int = 10,
                     overwrite: bool = False) -> dict[str, Any]:
    """INT8 by each installed backend, each timed at ``example_size`` (batch 1) in its own process; the faster one
    is kept as ``stem.onnx`` or ``stem.xml`` (+ ``.bin``), the other discarded. ``options``: per backend, keyword
    arguments of its quantizer (e.g. ``{"onnxruntime": {"method": "minmax", "keep_float": [...]}}``). Returns the
    kept model's report with ``backend_choice``: each backend's INT8 latency and the ratio, and whether the kept
    INT8 beat its own runtime's fp32 (:func:`int8_gains`: a warning where not). Existing files of ``stem``'s
    possible names are an error unless ``overwrite``."""
    from segzoo.deploy.quantize import quantize_to_file

    stem = _check_stem(stem, overwrite)
    options = {backend: dict(options.get(backend) or {}) for backend in INT8_BACKENDS} if options else {
        backend: {} for backend in INT8_BACKENDS}
    images = list(calibration)

    def write(backend: str, path: Path) -> dict[str, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "not faster than fp32": judged below
            if backend == "onnxruntime":
                return quantize_to_file(model, path, images, example_size=example_size, **options[backend])
            from segzoo.deploy.openvino import quantize_openvino

            return quantize_openvino(model, images, path, example_size=example_size, **options[backend])

    reports, ms, _ = _write_time_keep(stem, write, (1, model.in_channels, *example_size), repeats)
    chosen = min(ms, key=ms.get)
    target = stem.with_name(stem.name + SUFFIXES[chosen])
    choice = {"chosen": chosen, "int8_ms": ms, "example_size": list(example_size), "repeats": repeats,
              "timing": "each backend in its own process"}
    if len(ms) == 2:
        other = next(b for b in ms if b != chosen)
        choice["speedup_over_" + other] = round(ms[other] / ms[chosen], 2)
    else:
        choice["note"] = f"OpenVINO is not installed ({install_hint('openvino')}): onnxruntime only"
    choice["int8_faster_than_fp32"] = int8_gains(reports[chosen], chosen, example_size)
    return {**reports[chosen], "path": str(target), "backend": chosen, "backend_choice": choice}


def int8_gains(report: Mapping[str, Any], backend: str, size: Sequence[int]) -> bool:
    """Whether ``backend``'s INT8 ran faster than its own fp32 graph in the quantizer's timing (``report``'s
    ``<backend>_ms``); where not, a ``RuntimeWarning`` points to the fp32 export by measure, the faster deployment
    on such a CPU (e.g. an AVX2-only EPYC of CPUID family 23, where both runtimes' INT8 ran no faster than their
    fp32)."""
    own = report.get(f"{backend}_ms")
    if not isinstance(own, Mapping) or not {"fp32", "int8"} <= own.keys():
        raise InvalidValueError(f"the {backend} INT8 report lacks its '{backend}_ms' timing (fp32 and int8)")
    if own["int8"] < own["fp32"]:
        return True
    warnings.warn(f"INT8 is not faster than fp32 on this CPU: the faster INT8 file ({backend}, {own['int8']} ms) "
                  f"against {backend}'s own fp32 graph ({own['fp32']} ms) at {size[0]}x{size[1]}; an fp32 export "
                  "by measure (segzoo export --fastest, segzoo.deploy.export_fastest) is the faster deployment here",
                  RuntimeWarning, stacklevel=3)
    return False


def export_fastest(model: SegmentationModel, stem: str | Path, *, example_size: tuple[int, int] = (256, 320),
                   repeats: int = 10, dynamic: bool = True, opset: int | None = None, uint8_input: bool = False,
                   overwrite: bool = False) -> dict[str, Any]:
    """fp32 export to each installed runtime (onnxruntime; OpenVINO with the ``openvino`` extra), each file checked
    against PyTorch, timed at ``example_size`` (batch 1) in its own process beside PyTorch's fast path
    (``segzoo.optimize``); the faster file is kept as ``stem.onnx`` or ``stem.xml`` (+ ``.bin``). Returns its export
    report with ``runtime_choice``: each runtime's latency and the kept file's speed-up over the fast path. Where
    the fast path is faster than both files, a ``RuntimeWarning`` says so: then ``model.predict`` in PyTorch is
    this CPU's fastest fp32 path. Existing files of ``stem``'s possible names are an error unless ``overwrite``."""
    from segzoo.deploy import export

    stem = _check_stem(stem, overwrite)
    shape = (1, model.in_channels, *example_size)

    def write(backend: str, path: Path) -> dict[str, Any]:
        return export(model, path, dynamic=dynamic, example_size=example_size,
                      opset=opset if backend == "onnxruntime" else None, uint8_input=uint8_input)

    def time_fast_path(scratch: Path) -> float:
        model.save_pretrained(str(scratch / "pytorch"))
        return round(median_ms_in_own_process(FAST_PATH_LOADER, [str(scratch / "pytorch")], shape, repeats), 2)

    reports, ms, fast_ms = _write_time_keep(stem, write, shape, repeats, time_fast_path)
    chosen = min(ms, key=ms.get)
    target = stem.with_name(stem.name + SUFFIXES[chosen])
    choice = {"chosen": chosen, "fp32_ms": {**ms, "pytorch fast path": fast_ms}, "example_size": list(example_size),
              "repeats": repeats, "timing": "each runtime in its own process",
              "speedup_over_pytorch_fast_path": round(fast_ms / ms[chosen], 2)}
    if len(ms) == 1:
        choice["note"] = f"OpenVINO is not installed ({install_hint('openvino')}): onnxruntime only"
    if fast_ms < ms[chosen]:
        warnings.warn(f"PyTorch's fast path ({fast_ms} ms) was faster than the {chosen} file ({ms[chosen]} ms) at "
                      f"{example_size[0]}x{example_size[1]} on this CPU: model.predict in PyTorch is the faster fp32 "
                      f"path here; {str(target)!r} is kept as the faster export", RuntimeWarning, stacklevel=2)
    return {**reports[chosen], "path": str(target), "backend": chosen, "runtime_choice": choice}


def fast_path_of(folder: str) -> Any:
    """PyTorch's fp32 fast path of a saved model: the timing child's loader in :func:`export_fastest`."""
    from segzoo.api import from_pretrained
    from segzoo.inference.fast import optimize

    return optimize(from_pretrained(folder).eval(), dtype=None)


FAST_PATH_LOADER = f"{__name__}:fast_path_of"


def _write_time_keep(stem: Path, write: Callable[[str, Path], dict[str, Any]], shape: Sequence[int], repeats: int,
                     also: Callable[[Path], float] | None = None) -> tuple[dict, dict[str, float], float | None]:
    """Each installed runtime's file written by ``write(runtime, path)`` into a scratch folder beside ``stem``, timed
    on ``shape`` in its own process, the fastest moved to ``stem`` + its suffix. Returns the reports, the
    latencies, and what ``also(scratch folder)`` measured there (None without it)."""
    if repeats < 1:
        raise InvalidValueError(f"repeats must be at least 1 (timed calls per runtime), got {repeats}")
    backends = [b for b in SUFFIXES if b == "onnxruntime" or _openvino_installed()]
    stem.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=stem.parent, prefix=f".{stem.name}.") as tmp:
        reports, ms = {}, {}
        for backend in backends:
            path = Path(tmp) / f"model{SUFFIXES[backend]}"
            reports[backend] = write(backend, path)
            ms[backend] = round(median_ms_in_own_process(LOADERS[backend], [str(path)], shape, repeats), 2)
        extra = also(Path(tmp)) if also else None
        _keep(Path(tmp) / f"model{SUFFIXES[min(ms, key=ms.get)]}", stem)
    return reports, ms, extra


def _check_stem(stem: str | Path, overwrite: bool) -> Path:
    """``stem`` as a path without a runtime's suffix, none of whose possible files exists unless ``overwrite``."""
    stem = Path(stem)
    if stem.suffix.lower() in (*SUFFIXES.values(), ".bin", ".pt2"):  # an export's suffix, surely not a stem's
        raise InvalidValueError(f"the fastest runtime decides the file's suffix: give a name without one, got "
                                f"{str(stem)!r}")
    for suffix in (*SUFFIXES.values(), ".bin"):  # which one is written is known only at the end
        check_output(stem.with_name(stem.name + suffix), overwrite=overwrite)
    return stem


def _keep(source: Path, stem: Path) -> Path:
    """Move the chosen file (an IR with its ``.bin``) from the scratch folder to ``stem`` + its suffix."""
    target = stem.with_name(stem.name + source.suffix)
    if source.suffix == ".xml":
        os.replace(source.with_suffix(".bin"), target.with_suffix(".bin"))
    os.replace(source, target)
    return target


def _openvino_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("openvino", "nncf"))
