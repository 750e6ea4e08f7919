"""Timing that production code may use (model cards' CPU latency, ``segzoo info``'s FLOPs): seconds per call with
device synchronisation, FLOP counts, percentiles. The benchmark programs live in the repository's ``benchmarks/``."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["latencies", "count_flops", "percentile"]


def latencies(fn: Callable[[], object], iters: int, device: torch.device) -> list[float]:
    """Seconds per call; CUDA events on GPU, perf_counter with synchronisation elsewhere."""
    out = []
    if device.type == "cuda":
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1000)
        return out
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one eval-mode forward pass on ``x`` (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.eval()(x)
    return int(counter.get_total_flops())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
