"""benchmarks.as_avx2: a process whose CPUID and /proc/cpuinfo answer as an AVX2-only CPU's. The real runs build the
masking library and start Python under it; they skip where this machine cannot mask (no cpuid_fault, no cc)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import segzoo
from benchmarks import _report, as_avx2
from conftest import REPO

REASON = as_avx2.unsupported_reason()
needs_masking = pytest.mark.skipif(REASON is not None, reason=f"cannot mask CPUID here: {REASON}")

# what the masked child reports; faulthandler is enabled first, so its SIGSEGV handler is installed before any
# CPUID runs (PyTorch's cpuinfo, oneDNN): masking must keep working beneath it
CHILD = """
import faulthandler, json
faulthandler.enable()
import torch
from benchmarks import _report
from segzoo.core.device import cpu_flags, cpu_has_vnni, native_bf16
print(json.dumps({"avx512": sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx")) or "vnni" in f),
                  "avx2": "avx2" in cpu_flags(), "vnni": cpu_has_vnni(), "bf16": native_bf16(torch.device("cpu")),
                  "capability": torch.backends.cpu.get_cpu_capability(), "cap": _report.isa_cap(),
                  "cpu": _report.cpu_description()}))
"""


def _masked_environment(tmp_path, monkeypatch) -> dict[str, str]:
    """The masked environment, the library built afresh in ``tmp_path``; a skip where the flag is listed but the
    kernel or a sandbox still refuses CPUID faulting (the library's own message), a failure for anything else."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    try:
        return as_avx2.masked_environment()
    except RuntimeError as exc:
        if "cannot fault on CPUID" in str(exc):
            pytest.skip(str(exc))
        raise


def _run_masked(code: str, tmp_path, monkeypatch) -> subprocess.CompletedProcess:
    env = _masked_environment(tmp_path, monkeypatch)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@needs_masking
def test_a_masked_process_sees_an_avx2_only_cpu_and_records_the_host(tmp_path, monkeypatch):
    run = _run_masked(CHILD, tmp_path, monkeypatch)
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["avx512"] == [] and seen["avx2"] and not seen["vnni"] and not seen["bf16"]
    assert seen["capability"] in ("AVX2", "DEFAULT") and seen["cap"] == "avx2-cpuid"
    assert seen["cpu"]["isa"] == ["avx2"] and seen["cpu"]["isa_cap"] == "avx2-cpuid"
    assert seen["cpu"]["host_isa"] == _report.cpu_description()["isa"]  # what the unmasked parent lists
    assert list(tmp_path.glob("segzoo/segzoo-avx2-only-*.so"))


@needs_masking
def test_a_real_segfault_under_the_mask_still_kills_the_process(tmp_path, monkeypatch):
    run = _run_masked("import ctypes; ctypes.string_at(0)", tmp_path, monkeypatch)
    assert run.returncode == -signal.SIGSEGV


def test_masking_is_refused_with_the_reason_where_the_cpu_cannot_fault_on_cpuid(monkeypatch):
    if sys.platform == "linux":
        reason = as_avx2.unsupported_reason("processor : 0\nflags : fpu sse2 avx avx2 fma\n")
        assert reason is not None and "cpuid_fault" in reason
    monkeypatch.setattr(as_avx2, "unsupported_reason", lambda cpuinfo=None: "no CPUID faulting here")
    with pytest.raises(RuntimeError, match="no CPUID faulting here"):
        as_avx2.masked_environment()
    with pytest.raises(SystemExit, match="as_avx2: no CPUID faulting here"):
        as_avx2.main(["python", "-c", "pass"])
    with pytest.raises(SystemExit, match="--isa-cap avx2-cpuid: no CPUID faulting here"):
        _report.run_under_isa_cap("avx2-cpuid", "benchmarks.deploy", None)  # before any restart
    with pytest.raises(SystemExit, match="Run a command as on an AVX2-only CPU"):
        as_avx2.main([])


@pytest.mark.skipif(as_avx2.active(), reason="this test session itself runs masked")
def test_outside_the_mask_no_cap_is_recorded():
    assert not as_avx2.active() and as_avx2.host_flags() == []
    assert "host_isa" not in _report.cpu_description()


@pytest.mark.slow
@needs_masking
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-x86_64 is not installed (Debian's qemu-user)")
def test_masked_onnxruntime_runs_the_int8_kernels_of_an_emulated_avx2_cpu(tmp_path, monkeypatch):
    """onnxruntime's MLAS picks kernels by CPUID: under the mask, an 8-bit INT8 file gives exactly the logits of
    QEMU's AVX2 CPU (EPYC-Rome), where on a VNNI host it gives others."""
    from benchmarks.int8_avx2_emulated import CHILD, EMULATOR
    from segzoo.core.device import cpu_has_vnni
    from segzoo.deploy import quantize

    torch.manual_seed(0)
    model = segzoo.create("unet_r18", encoder="test_resnet", num_classes=3).eval()
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # not faster; saturates without VNNI: both the point here
        q = quantize(model, images, example_size=(64, 64), weight_type="int8", reduce_range=False, method="minmax")
    q.save(tmp_path / "int8.onnx")
    np.savez(tmp_path / "inputs.npz", a=torch.rand(1, 3, 64, 64, generator=g).mul(4).sub(2).numpy())
    masked = _masked_environment(tmp_path, monkeypatch)
    logits = {}
    for side, prefix, env in (("native", [], None), ("masked", [], masked),
                              ("emulated", list(EMULATOR), None)):
        out = tmp_path / f"{side}.npz"
        run = subprocess.run([*prefix, sys.executable, str(CHILD), str(tmp_path / "int8.onnx"),
                              str(tmp_path / "inputs.npz"), str(out)], env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        logits[side] = np.load(out)["a"]
    np.testing.assert_array_equal(logits["masked"], logits["emulated"])
    if cpu_has_vnni():  # the host's own kernels differ, so the equality above says which kernels ran
        assert np.abs(logits["native"] - logits["emulated"]).max() > 0


def test_a_cache_folder_that_cannot_be_written_is_one_clear_error(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(RuntimeError, match=f"cannot build the masking library in {blocked}"):
        as_avx2.library(blocked)
    assert blocked.read_text() == "not a folder"


def test_a_kernel_that_refuses_cpuid_faulting_despite_the_flag_is_one_clear_error(tmp_path, monkeypatch):
    """The flag can be listed while a sandbox refuses ARCH_SET_CPUID: the trial start finds it, before any
    benchmark runs unmasked or dies."""
    refused = "avx2_only.so: this CPU or kernel cannot fault on CPUID (no cpuid_fault flag); refusing to run unmasked"
    monkeypatch.setattr(as_avx2, "unsupported_reason", lambda cpuinfo=None: None)
    monkeypatch.setattr(as_avx2, "library", lambda cache=None: tmp_path / "segzoo-avx2-only-x.so")
    monkeypatch.setattr(as_avx2.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 3, stdout="", stderr=refused))
    with pytest.raises(RuntimeError, match=r"segzoo-avx2-only-x.so does not start here: .*cannot fault on CPUID"):
        as_avx2.masked_environment()
