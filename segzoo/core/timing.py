"""Timing that production code may use (model cards' CPU latency, ``segzoo info``'s FLOPs): seconds per call with
device synchronisation, FLOP counts, percentiles. The benchmark programs live in the repository's ``benchmarks/``."""

from __future__ import annotations

import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import torch

__all__ = ["latencies", "median_ms", "count_flops", "percentile", "median_ms_in_own_process"]


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


def median_ms(fn: Callable[[], object], repeats: int = 5, warmup: int = 1,
              device: torch.device | str = "cpu") -> float:
    """Median milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones: the one timing of
    production code (INT8 reports, model cards); the benchmarks time with :func:`latencies` too."""
    for _ in range(warmup):
        fn()
    return 1000 * statistics.median(latencies(fn, repeats, torch.device(device)))


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


def median_ms_in_own_process(loader: str, args: Sequence[str | int | float], shape: Sequence[int], repeats: int,
                             threads: int | None = None, timeout: float = 1800) -> float:
    """Median milliseconds per call (after one untimed call) of the model that ``loader`` returns, on a random float
    batch of ``shape``, timed in a fresh Python process that loads nothing else.

    Runtimes interfere within a process: once onnxruntime's or OpenVINO's thread pools have run, PyTorch's latency
    was measured 35-75% higher, so formats timed one after another in one process are ranked by their order.
    ``loader`` is ``"module:attribute.path"`` (e.g. ``"segzoo.inference.runtime:OnnxModel.load"``), called with
    ``args`` (JSON values: paths as strings) in the child; ``threads`` (default: this process's
    ``torch.get_num_threads()``) is set there too. A child that fails is a RuntimeError with its stderr's end.
    """
    if not all(loader.partition(":")[::2]):
        raise ValueError(f"loader {loader!r}: expected 'module:attribute', e.g. "
                         "'segzoo.inference.runtime:OnnxModel.load'")
    request = {"loader": loader, "args": list(args), "shape": [int(s) for s in shape], "repeats": int(repeats),
               "threads": int(threads or torch.get_num_threads())}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = "import sys; from segzoo.core.timing import _time_request; _time_request(sys.argv[1])"
    done = subprocess.run([sys.executable, "-c", child, json.dumps(request)], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"timing {loader}{tuple(args)} in its own process failed (exit {done.returncode}): "
                           f"{done.stderr.strip()[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["median_ms"])


def _resolve(loader: str) -> Callable[..., Callable[[torch.Tensor], object]]:
    module, _, attribute = loader.partition(":")
    target = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def _time_request(argument: str) -> None:
    """The child's side of :func:`median_ms_in_own_process`: prints ``{"median_ms": ...}`` as its last line."""
    request = json.loads(argument)
    torch.set_num_threads(request["threads"])
    fn = _resolve(request["loader"])(*request["args"])
    x = torch.randn(*request["shape"])
    with torch.inference_mode():
        fn(x)
        times = latencies(lambda: fn(x), request["repeats"], torch.device("cpu"))
    print(json.dumps({"median_ms": 1000 * statistics.median(times)}), flush=True)
