"""Timing and memory measurement of the benchmark programs on CPU and GPU (the timing that production code uses
is ``segzoo.core.timing``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["latencies", "round_robin_seconds", "train_step_times", "peak_memory", "matmul_peak_flops", "percentile",
           "count_flops"]

from segzoo.core.timing import count_flops, latencies, percentile  # noqa: E402  (re-exported for the suite)


def round_robin_seconds(fns: dict[str, Callable[[], object]], rounds: int, block: int = 5,
                        warmup: int = 3, settle: int = 1) -> dict[str, list[list[float]]]:
    """Seconds per call of each function, timed round-robin: each round runs every function for ``settle``
    untimed calls (they wake that runtime's threads and outlast the previous one's) then ``block`` timed calls.
    The machine's drift over the run falls on every function alike, so ratios taken within a round compare like
    with like. ``warmup`` untimed calls of each come first. Returns, per function, a list of rounds, each a list
    of times."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[list[float]]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(settle):
                fn()
            times = []
            for _ in range(block):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            out[name].append(times)
    return out


def _reset_cpu_peak() -> bool:
    """Reset the process's peak RSS (Linux: writing 5 to clear_refs); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _cpu_peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(fn: Callable[[], object], device: torch.device) -> float | None:
    """MiB: CUDA max allocated during ``fn``; on CPU the process's peak RSS during ``fn`` (None if it
    cannot be reset on this OS)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    if not _reset_cpu_peak():
        return None
    fn()
    return _cpu_peak_mb()


def train_step_times(model: torch.nn.Module, x: torch.Tensor, num_classes: int, iters: int,
                     dtype: torch.dtype | None) -> list[float]:
    """Seconds per forward + cross-entropy + backward + AdamW step."""
    device = x.device
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    y = torch.randint(0, max(num_classes, 2), (x.shape[0], *x.shape[-2:]), device=device)
    model.train()

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(x)
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y.float().clamp(0, 1))
                    if out.shape[1] == 1 else torch.nn.functional.cross_entropy(out, y.clamp(max=out.shape[1] - 1)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, optimiser state)
    times = latencies(step, iters, device)
    model.eval()
    return times


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.bfloat16, n: int = 8192) -> float:
    """Dense matmul FLOP/s measured now on this device: the denominator of MFU."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = latencies(lambda: a @ b, 10, device)
    return 2 * n**3 / statistics.median(times)
