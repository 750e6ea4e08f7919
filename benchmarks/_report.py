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

from segzoo.core.device import cpu_flags

# Instruction-set caps a run can impose on this CPU to stand in for a smaller one: PyTorch's own kernels
# (ATEN_CPU_CAPABILITY) and oneDNN's, in PyTorch and in OpenVINO's CPU plugin (ONEDNN_MAX_CPU_ISA). onnxruntime's
# MLAS reads CPUID and has no such switch. The capped code paths run for real, on this CPU's cores and caches.
ISA_CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
UNCAPPED_RUNTIMES = ("onnxruntime",)


def isa_cap() -> str | None:
    """The cap of ``ISA_CAPS`` this process runs under (all its variables set), or None."""
    return next((cap for cap, env in ISA_CAPS.items() if all(os.environ.get(k) == v for k, v in env.items())), None)


def run_under_isa_cap(cap: str | None, module: str, argv: list[str] | None) -> None:
    """Re-run ``python -m module`` with this process's arguments under ``cap``'s variables, unless already under it
    (they must be set before PyTorch or OpenVINO first dispatches a kernel, so the process starts anew). Only a
    command-line run (``argv`` None) can be re-run; a call with arguments must already be under the cap."""
    if cap is None or isa_cap() == cap:
        return
    if argv is not None:
        raise ValueError(f"an instruction-set cap applies to a whole process: run python -m {module} --isa-cap {cap} "
                         f"from the command line, or set {ISA_CAPS[cap]} before starting Python")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], {**os.environ, **ISA_CAPS[cap]})


def cpu_description() -> dict[str, Any]:
    """The CPU a figure was measured on: model name, core count, and the instruction sets INT8 and bf16 speed
    depend on (AVX2, AVX512-VNNI, AVX512-BF16, AMX), from /proc/cpuinfo (Linux; the platform's name elsewhere), and
    the instruction-set cap the run imposed (``isa_cap``), if any."""
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if line.startswith("model name"):
            info["model"] = line.split(":", 1)[1].strip()
            break
    flags = cpu_flags(text)
    if flags:
        info["isa"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                                   "amx_int8") if f in flags]
    if isa_cap():
        info["isa_cap"] = isa_cap()
    return info


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
