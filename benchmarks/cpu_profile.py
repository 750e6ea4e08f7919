"""Why the CPU fast path cannot reach 1.3x for some pairs: fp32 matmul peak, per-op profile of the fast path,
and the bf16 (AVX512-BF16) alternative. Run: python -m benchmarks.cpu_profile"""

import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

import segzoo


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak(dtype: torch.dtype, n: int = 2048) -> float:
    """Dense matmul GFLOP/s at ``dtype``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    return 2 * n**3 / _median_seconds(lambda: a @ b, 10) / 1e9


def main() -> None:
    torch.manual_seed(0)
    print("threads", torch.get_num_threads(), "fp32 matmul GFLOP/s", round(peak(torch.float32)),
          "bf16", round(peak(torch.bfloat16)), flush=True)
    x = torch.randn(2, 3, 512, 512)
    for name in ["fcn_r50", "deeplabv3plus_r50", "unet_carvana"]:
        model = segzoo.create(name).eval()
        fast = segzoo.optimize(model)
        fast(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fast(x)
        rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:6]
        total = sum(e.self_cpu_time_total for e in prof.key_averages())
        top = ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.0f}%" for e in rows)
        print(name, "top ops (self CPU %):", top, flush=True)
        fast_bf16 = segzoo.optimize(model, dtype=torch.bfloat16)
        fast_bf16(x)
        fast_bf16(x)
        bf16_s, fp32_s = (_median_seconds(lambda fn=fn: fn(x), 3) for fn in (fast_bf16, fast))
        with torch.no_grad():
            agree = (model(x).argmax(1) == fast_bf16(x).argmax(1)).float().mean().item()
        print(name, f"fast fp32 {2 / fp32_s:.2f} img/s, fast bf16 (CPU autocast) {2 / bf16_s:.2f} img/s, "
                    f"argmax agreement {agree:.4f}", flush=True)


if __name__ == "__main__":
    main()
