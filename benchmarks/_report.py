"""Writing a benchmark's result: the JSON file with the machine it ran on, and a short summary on stdout."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import as_avx2
from segzoo.core.device import cpu_flags

# Instruction-set caps a run can impose on this CPU to stand in for a smaller one. ``avx2``: PyTorch's own kernels
# (ATEN_CPU_CAPABILITY) and oneDNN's, in PyTorch and in OpenVINO's CPU plugin (ONEDNN_MAX_CPU_ISA); onnxruntime's MLAS
# reads CPUID and has no such switch. ``avx2-cpuid``: the process's CPUID and /proc/cpuinfo answer as an AVX2-only
# CPU (benchmarks.as_avx2), which every runtime obeys. The capped code paths run for real, on this CPU's cores.
ISA_CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
CPUID_CAPS = ("avx2-cpuid",)
CAP_CHOICES = sorted([*ISA_CAPS, *CPUID_CAPS])
UNCAPPED_RUNTIMES = ("onnxruntime",)


def isa_cap() -> str | None:
    """The cap this process runs under: ``avx2-cpuid`` where its CPUID is masked, else the cap of ``ISA_CAPS``
    whose variables are all set, else None."""
    if as_avx2.active():
        return "avx2-cpuid"
    return next((cap for cap, env in ISA_CAPS.items() if all(os.environ.get(k) == v for k, v in env.items())), None)


def cap_phrase(cap: str | None) -> str:
    """How a table names ``cap``: ``capped at AVX2``, ``CPUID masked to AVX2``, or nothing."""
    if not cap:
        return ""
    return f"capped at {cap.upper()}" if cap in ISA_CAPS else "CPUID masked to AVX2"


def uncapped_runtimes(cap: str | None) -> tuple[str, ...]:
    """The runtimes ``cap`` does not reach: their figures are the host's, not the capped CPU's."""
    return UNCAPPED_RUNTIMES if cap in ISA_CAPS else ()


def run_under_isa_cap(cap: str | None, module: str, argv: list[str] | None) -> None:
    """Re-run ``python -m module`` with this process's arguments under ``cap``, unless already under it (a cap must
    be in place before PyTorch or OpenVINO first dispatches a kernel, so the process starts anew). Only a
    command-line run (``argv`` None) can be re-run; a call with arguments must already be under the cap."""
    if cap is None or isa_cap() == cap:
        return
    how = ISA_CAPS[cap] if cap in ISA_CAPS else "python -m benchmarks.as_avx2"
    if argv is not None:
        raise ValueError(f"an instruction-set cap applies to a whole process: run python -m {module} --isa-cap {cap} "
                         f"from the command line, or start Python under {how}")
    try:
        env = {**os.environ, **ISA_CAPS[cap]} if cap in ISA_CAPS else as_avx2.masked_environment()
    except RuntimeError as exc:  # this machine cannot mask its CPUID: one line, not a traceback
        raise SystemExit(f"--isa-cap {cap}: {exc}") from exc
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)


def cpu_description() -> dict[str, Any]:
    """The CPU a figure was measured on: model name, CPUID family/model, core count, and the instruction sets INT8
    and bf16 speed depend on (AVX2, AVX512-VNNI, AVX512-BF16, AMX), from /proc/cpuinfo (Linux; the platform's name
    elsewhere), and the instruction-set cap the run imposed (``isa_cap``), if any; under ``avx2-cpuid`` also the host's
    (``host_isa``), since ``isa`` then lists what the masked process saw."""
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    info["model"] = _cpuinfo_field(text, "model name") or info["model"]
    family, number = _cpuinfo_field(text, "cpu family"), _cpuinfo_field(text, "model")
    if family and number:  # names alone do not tell CPU generations apart ("AMD EPYC" is Zen 1 to Zen 5)
        info["family_model"] = f"{family}/{number}"
    flags = cpu_flags(text)
    if flags:
        info["isa"] = _listed_isa(flags)
    if isa_cap():
        info["isa_cap"] = isa_cap()
    if as_avx2.host_flags():
        info["host_isa"] = _listed_isa(frozenset(as_avx2.host_flags()))
    return info


def _cpuinfo_field(text: str, key: str) -> str | None:
    """The first processor's ``key`` in /proc/cpuinfo's text, or None."""
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return None


def _listed_isa(flags: frozenset[str]) -> list[str]:
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
            if f in flags]


def write_result(result: dict[str, Any], output: str | Path, summary_keys: Sequence[str]) -> dict[str, Any]:
    result["machine"] = {"threads": torch.get_num_threads(), "platform": platform.platform(),
                         "torch": torch.__version__}
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # a run killed mid-write leaves the previous results whole
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    print(json.dumps({k: result[k] for k in summary_keys}, indent=2))
    return result


def read_results(folder: Path) -> list[dict[str, Any]]:
    """Every JSON results file in ``folder``, in file-name order (a missing folder: none)."""
    return [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]


def replace_between_markers(readme: Path, start: str, end: str, text: str) -> None:
    """Replace what stands between a README's ``start`` and ``end`` markers with ``text`` (atomically); a README
    without both markers is a ValueError naming them."""
    content = readme.read_text()
    if start not in content or end not in content:
        raise ValueError(f"{readme} lacks the table markers {start!r} ... {end!r}")
    before, rest = content.split(start, 1)
    after = rest.split(end, 1)[1]
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(f"{before}{start}\n{text}\n{end}{after}")
    tmp.replace(readme)
