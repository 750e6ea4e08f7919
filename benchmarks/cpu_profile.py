"""Why the CPU fast path cannot reach 1.3x for some pairs: fp32 matmul peak, per-op profile of the fast path,
and the bf16 (AVX512-BF16) alternative. Run: python -m benchmarks.cpu_profile"""
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

import segzoo

torch.manual_seed(0)
def peak(dtype):
    n = 2048; a = torch.randn(n, n, dtype=dtype); b = torch.randn(n, n, dtype=dtype)
    for _ in range(3): a @ b
    ts = []
    for _ in range(10):
        t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(ts) / 1e9
print("threads", torch.get_num_threads(), "fp32 matmul GFLOP/s", round(peak(torch.float32)), "bf16", round(peak(torch.bfloat16)), flush=True)
x = torch.randn(2, 3, 512, 512)
for name in ["fcn_r50", "deeplabv3plus_r50", "unet_carvana"]:
    m = segzoo.create(name).eval()
    fast = segzoo.optimize(m)
    fast(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fast(x)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:6]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    print(name, "top ops (self CPU %):", ", ".join(f"{e.key} {100*e.self_cpu_time_total/total:.0f}%" for e in rows), flush=True)
    fb = segzoo.optimize(m, dtype=torch.bfloat16)
    fb(x); fb(x)
    ts = []
    for _ in range(3):
        t = time.perf_counter(); fb(x); ts.append(time.perf_counter() - t)
    ts32 = []
    for _ in range(3):
        t = time.perf_counter(); fast(x); ts32.append(time.perf_counter() - t)
    with torch.no_grad():
        ref = m(x); out = fb(x)
    agree = (ref.argmax(1) == out.argmax(1)).float().mean().item()
    print(name, f"fast fp32 {2/statistics.median(ts32):.2f} img/s, fast bf16 (CPU autocast) {2/statistics.median(ts):.2f} img/s, argmax agreement {agree:.4f}", flush=True)
