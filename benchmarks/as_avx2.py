"""Run a command as on an AVX2-only CPU, at native speed: ``python -m benchmarks.as_avx2 COMMAND [ARG ...]``.

The command runs with ``native/avx2_only.c`` preloaded (built here with the system C compiler, once per version of
the source). Its CPUID answers as an AVX2-only x86-64 CPU would, without AVX512, VNNI, BF16 or AMX, and so does the
text of ``/proc/cpuinfo``. PyTorch, oneDNN, OpenVINO and onnxruntime's MLAS then pick their AVX2 kernels, and
segzoo its AVX2 choices (7-bit INT8 weights, fp32 training), all running for real on this CPU's cores. This goes
further than ``--isa-cap avx2``'s environment variables, which onnxruntime ignores; on a VNNI CPU its INT8 logits
equal those of onnxruntime under ``qemu-x86_64 -cpu EPYC-Rome`` (see ``benchmarks.int8_avx2_emulated``).

It stands in for an AVX2-only CPU and does not measure one: clocks, caches and the width of the execution units
stay the host's. Needs Linux on x86-64, a C compiler (``cc``) and CPUID faulting (the ``cpuid_fault`` flag in
``/proc/cpuinfo``; recent Intel and AMD CPUs have it, in KVM guests too).

Benchmarks record it: under it, ``benchmarks._report.cpu_description()`` gives ``isa_cap: "avx2-cpuid"`` and the
host's instruction sets as ``host_isa``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("native") / "avx2_only.c"
LIBRARY_PREFIX = "segzoo-avx2-only-"
# the host's instruction sets, as its /proc/cpuinfo lists them, passed to the masked process (which reads the masked
# /proc/cpuinfo) so that its results can say what the host was
HOST_ISA_VARIABLE = "SEGZOO_HOST_CPU_FLAGS"
# glibc picks its string functions by CPUID before the preloaded library starts: these keep them at AVX2 too
GLIBC_TUNABLES = "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD"


def unsupported_reason(cpuinfo: str | None = None) -> str | None:
    """Why a command cannot run masked here (None where it can): not Linux on x86-64, no C compiler, or no CPUID
    faulting in ``cpuinfo`` (this machine's ``/proc/cpuinfo`` by default)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"CPUID masking needs Linux on x86-64, not {sys.platform} on {platform.machine()}"
    if shutil.which("cc") is None:
        return "no C compiler: cc is not on PATH (Debian's package gcc has it)"
    if cpuinfo is None:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    if "cpuid_fault" not in _flags(cpuinfo):
        return "this CPU (or its hypervisor) cannot fault on CPUID: /proc/cpuinfo lacks the cpuid_fault flag"
    return None


def _flags(cpuinfo: str) -> list[str]:
    line = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "flags :")
    return line.split(":", 1)[1].split()


def library(cache: Path | None = None) -> Path:
    """The built masking library, compiled into ``cache`` (default ``$XDG_CACHE_HOME/segzoo`` or
    ``~/.cache/segzoo``) unless this version of the source already is; a RuntimeError with the compiler's message
    where it does not build."""
    source = SOURCE.read_bytes()
    folder = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segzoo"
    path = folder / f"{LIBRARY_PREFIX}{hashlib.sha256(source).hexdigest()[:12]}.so"
    if path.exists():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:  # built aside, then moved: a killed build leaves nothing
            built = Path(tmp) / path.name
            run = subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(built), str(SOURCE), "-ldl"],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError(f"cc could not build {SOURCE}: {run.stderr.strip()[-2000:]}")
            built.replace(path)
    except OSError as exc:
        raise RuntimeError(f"cannot build the masking library in {folder}: {exc}") from exc
    return path


def masked_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default this process's) with the masking library preloaded; a RuntimeError saying why where
    this machine cannot mask."""
    reason = unsupported_reason()
    if reason:
        raise RuntimeError(reason)
    env = dict(os.environ if environ is None else environ)
    built = library()
    trial = subprocess.run(["true"], env={**env, "LD_PRELOAD": str(built)}, capture_output=True, text=True)
    if trial.returncode != 0:  # the flag is there, but the kernel (or a sandbox) refuses CPUID faulting
        raise RuntimeError(f"{built.name} does not start here: {trial.stderr.strip()[-500:] or trial.returncode}")
    preload = " ".join(p for p in (str(built), env.get("LD_PRELOAD", "")) if p)
    tunables = ":".join(t for t in (env.get("GLIBC_TUNABLES", ""), GLIBC_TUNABLES) if t)
    host = " ".join(_flags(Path("/proc/cpuinfo").read_text()))
    return {**env, "LD_PRELOAD": preload, "GLIBC_TUNABLES": tunables, HOST_ISA_VARIABLE: host}


@functools.cache
def active() -> bool:
    """Whether this process runs masked: the library is mapped into it (read once; it cannot change)."""
    try:
        return LIBRARY_PREFIX in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def host_flags() -> list[str]:
    """The host's /proc/cpuinfo flags, as the unmasked parent passed them ([] outside a masked process)."""
    return os.environ.get(HOST_ISA_VARIABLE, "").split() if active() else []


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        sys.exit(__doc__)
    try:
        env = masked_environment()
    except RuntimeError as exc:
        sys.exit(f"as_avx2: {exc}")
    sys.stdout.flush()
    os.execvpe(args[0], args, env)


if __name__ == "__main__":
    main()
