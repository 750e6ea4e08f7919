"""Choosing the device a command runs on: the one rule behind ``train``, ``eval`` and ``predict``."""

from __future__ import annotations

import functools
import os

import torch

from segzoo.core.errors import InvalidValueError

__all__ = ["pick_device", "cpu_flags", "native_bf16", "INT8_VNNI_FLAGS", "cpu_has_vnni",
           "onednn_int8_has_vnni"]

# the CPU instruction sets that compute bf16 in hardware; elsewhere PyTorch emulates bf16 autocast on the CPU
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# the instruction sets whose u8 x s8 dot products accumulate in 32 bits; without them (AVX2 alone) INT8 kernels add
# pairs of products in 16 bits, which saturate unless weights keep 7 bits or are unsigned
INT8_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# ONEDNN_MAX_CPU_ISA values below VNNI: oneDNN (in PyTorch and OpenVINO) then runs INT8 without it
_ONEDNN_ISAS_WITHOUT_VNNI = ("SSE41", "AVX", "AVX2", "AVX512_CORE")


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU) or a device that exists here; anything else is an error naming it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise InvalidValueError(f"device {name!r} is not a device name; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
                                ) from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            raise InvalidValueError(f"device {name!r} is not available here ({count} CUDA device(s)); "
                                    "use 'cpu' or 'auto'")
    elif device.type not in ("cpu", "mps", "xpu"):
        raise InvalidValueError(f"device {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The instruction-set flags in ``cpuinfo`` (the text of Linux's ``/proc/cpuinfo``); by default this machine's,
    read once (empty where it cannot be read)."""
    if cpuinfo is None:
        return _machine_flags()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def _machine_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return cpu_flags(f.read())
    except OSError:
        return frozenset()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or
    AMX. Elsewhere bf16 autocast is emulated, and slower than fp32 (on an AVX2-only CPU an epoch measured 46x)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(BF16_CPU_FLAGS & cpu_flags())
    return False


def cpu_has_vnni() -> bool:
    """Whether this CPU has one of ``INT8_VNNI_FLAGS`` (``/proc/cpuinfo``; False where it cannot be read)."""
    return any(f in cpu_flags() for f in INT8_VNNI_FLAGS)


def onednn_int8_has_vnni(cpu_vnni: bool | None = None) -> bool:
    """Whether oneDNN's INT8 kernels (OpenVINO's CPU plugin) use VNNI or AMX here: the CPU has it (``cpu_vnni``,
    default :func:`cpu_has_vnni`) and ``ONEDNN_MAX_CPU_ISA`` does not cap it away."""
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ONEDNN_ISAS_WITHOUT_VNNI
    return (cpu_has_vnni() if cpu_vnni is None else cpu_vnni) and not capped
