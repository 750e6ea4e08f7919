"""Whether an INT8 file's arithmetic saturates on this CPU: signed 8-bit weights where the INT8 kernels lack VNNI.

Without VNNI or AMX (an AVX2-only CPU), onnxruntime's and oneDNN's u8 x s8 kernels add pairs of products in 16
bits, which saturate for 8-bit weights: a file quantized on a VNNI CPU and carried to such a CPU classes pixels
differently there. ``segzoo quantize`` on the AVX2 CPU itself writes 7-bit (or unsigned) weights, which do not.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from segzoo.core.device import cpu_flags, cpu_has_vnni, onednn_int8_has_vnni

__all__ = ["saturating_weights", "warn_if_saturating"]

RUNTIMES = ("onnxruntime", "openvino")


def saturating_weights(report: Mapping[str, Any], runtime: str, cpu_vnni: bool | None = None) -> str | None:
    """Which weights of an INT8 file (its ``report`` from ``segzoo quantize``) saturate on this CPU, or None:
    onnxruntime's signed 8-bit weights (no ``reduce_range``), OpenVINO's outside NNCF's overflow fix. ``cpu_vnni``:
    whether the CPU has VNNI (default: read here; a CPU whose flags cannot be read is not judged)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if cpu_vnni is None:
        if not cpu_flags():
            return None
        cpu_vnni = cpu_has_vnni()
    if runtime == "openvino":
        if report.get("backend") != "openvino" or onednn_int8_has_vnni(cpu_vnni):
            return None
        fix = report.get("overflow_fix", "first_layer")  # NNCF's default, before segzoo recorded it
        return None if fix == "enable" else f"8-bit weights outside NNCF's overflow fix ({repr(fix)[:80]})"
    if ("weight_type" not in report and "reduce_range" not in report) or cpu_vnni:
        return None  # an fp32 export, or a CPU whose kernels accumulate in 32 bits
    if report.get("weight_type", "int8") != "int8" or report.get("reduce_range") is True:
        return None
    return "signed 8-bit weights (no reduce_range)"


def warn_if_saturating(report: Mapping[str, Any], runtime: str, source: str) -> None:
    """A RuntimeWarning naming ``source`` when :func:`saturating_weights` finds weights that saturate here."""
    found = saturating_weights(report, runtime)
    if found is not None:
        made_on = report.get("cpu_int8")
        where = ""
        if isinstance(made_on, list) and made_on:
            where = f" (quantized on a CPU with {', '.join(map(str, made_on))[:200]})"
        warnings.warn(f"{source} has {found}{where}, but this CPU's INT8 kernels lack VNNI: they add pairs of "
                      "u8 x s8 products in 16 bits, which saturate and change classes. Quantize on this CPU "
                      "(segzoo quantize keeps 7-bit weights here) or with --weight-type uint8", RuntimeWarning,
                      stacklevel=3)
