"""The benchmark suite: segzoo against its peers, same process, interleaved, medians.

    python -m benchmarks --device cpu --size 512 --batch 2
    segzoo bench --device cuda --size 512 --batch 8 --modes eager bf16 compile fast
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.measure import (
    count_flops,
    latencies,
    matmul_peak_flops,
    peak_memory,
    percentile,
    train_step_times,
)
from benchmarks.pairs import PAIRS
from segzoo.core.errors import InvalidValueError, UnknownNameError
from segzoo.core.extras import install_hint

__all__ = ["main", "run", "MODES"]

MODES = ("eager", "channels_last", "bf16", "fp16", "compile", "fast", "fast_compile")
GPU_ONLY = {"bf16", "fp16"}
SEGZOO_ONLY = {"fast", "fast_compile"}


def _prepare(model: torch.nn.Module, mode: str, device: torch.device, example: torch.Tensor):
    """A callable running one inference batch in ``mode``."""
    import segzoo

    model = model.to(device).eval()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
    if mode in ("fast", "fast_compile"):
        fast = segzoo.optimize(model, compile=mode == "fast_compile", example=example[:1])
        return lambda x: fast(x)
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    if mode == "compile":
        model = torch.compile(model)

    def run(x):
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if mode == "channels_last":
                x = x.contiguous(memory_format=torch.channels_last)
            return model(x)

    return run


def _measure_mode(name, pair, sides, info, mode, dev, x, batch, repeats, iters, warmup, peak, log) -> list[dict]:
    rows = []
    runners = {}
    for side, model in sides.items():
        if side == "peer" and mode in SEGZOO_ONLY:
            continue
        runners[side] = _prepare(copy.deepcopy(model), mode, dev, x)
        for _ in range(warmup):
            runners[side](x)
    times: dict[str, list[float]] = {side: [] for side in runners}
    for _ in range(repeats):  # interleaved: segzoo, peer, segzoo, peer, ...
        for side, fn in runners.items():
            times[side] += latencies(lambda fn=fn: fn(x), iters, dev)
    for side, fn in runners.items():
        med = statistics.median(times[side])
        row = {
            "pair": name, "side": side, "model": name if side == "segzoo" else pair.peer_name, "mode": mode,
            "params": info[side]["params"], "flops": info[side]["flops"],
            "latency_ms_p50": med * 1000, "latency_ms_p95": percentile(times[side], 0.95) * 1000,
            "images_per_s": batch / med, "peak_memory_mb": peak_memory(lambda fn=fn: fn(x), dev),
        }
        if peak:
            row["achieved_tflops"] = info[side]["flops"] / med / 1e12
            row["mfu"] = info[side]["flops"] / med / peak
        rows.append(row)
        log(f"{name:18} {side:6} {mode:13} {row['images_per_s']:8.2f} img/s  p50 {row['latency_ms_p50']:9.1f} ms")
    return rows


def run(
    pairs: list[str], modes: list[str], device: str, size: tuple[int, int], batch: int,
    repeats: int = 3, iters: int = 3, warmup: int = 1, train: bool = True, log=print,
) -> dict[str, Any]:
    dev = torch.device(device)
    unknown = sorted(set(pairs) - set(PAIRS))
    if unknown:
        raise UnknownNameError(f"unknown benchmark pair(s) {unknown}; pairs: {sorted(PAIRS)}")
    bad = sorted(set(modes) - set(MODES))
    if bad:
        raise InvalidValueError(f"unknown mode(s) {bad}; modes: {list(MODES)}")
    if dev.type != "cuda":
        modes = [m for m in modes if m not in GPU_ONLY]
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, 3, *size, generator=g).to(dev)  # not all zeros: real data paths in every kernel
    peak = matmul_peak_flops(dev) if dev.type == "cuda" else None
    rows: list[dict[str, Any]] = []
    for name in pairs:
        pair = PAIRS[name]
        torch.manual_seed(0)
        sides = {"segzoo": pair.segzoo().to(dev).eval()}
        if pair.peer is not None:
            sides["peer"] = pair.peer().to(dev).eval()
        info = {side: {"params": sum(p.numel() for p in m.parameters()), "flops": count_flops(m, x[:1]) * batch}
                for side, m in sides.items()}
        for mode in modes:
            try:
                rows += _measure_mode(name, pair, sides, info, mode, dev, x, batch, repeats, iters, warmup, peak, log)
            except Exception as exc:  # one failing mode (a compile error, say) must not lose the whole run
                log(f"{name:18} {mode:13} failed: {type(exc).__name__}: {exc}")
                rows.append({"pair": name, "side": "segzoo", "mode": mode, "error": f"{type(exc).__name__}: {exc}"})
        if train:
            for side, model in sides.items():
                dtype = torch.bfloat16 if dev.type == "cuda" else None
                t = train_step_times(copy.deepcopy(model), x, getattr(model, "num_classes", 21), iters, dtype)
                med = statistics.median(t)
                rows.append({"pair": name, "side": side, "model": name if side == "segzoo" else pair.peer_name,
                             "mode": "train_bf16" if dtype else "train_fp32", "params": info[side]["params"],
                             "flops": info[side]["flops"], "images_per_s": batch / med,
                             "latency_ms_p50": med * 1000, "latency_ms_p95": percentile(t, 0.95) * 1000})
                log(f"{name:18} {side:6} {rows[-1]['mode']:13} {rows[-1]['images_per_s']:8.2f} img/s (training)")
        del sides
    return {
        "device": (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                   else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
        "versions": _versions(),
        "settings": {"pairs": pairs, "modes": modes, "size": list(size), "batch": batch, "repeats": repeats,
                     "iters": iters, "warmup": warmup},
        "bf16_matmul_peak_tflops": peak / 1e12 if peak else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": rows,
    }


def _versions() -> dict[str, str]:
    import timm
    import torchvision

    import segzoo

    out = {"segzoo": segzoo.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
           "timm": timm.__version__, "python": platform.python_version()}
    try:
        import segmentation_models_pytorch as smp

        out["segmentation_models_pytorch"] = smp.__version__
    except ImportError:
        pass
    return out


def markdown(result: dict[str, Any]) -> str:
    """A table per mode: segzoo vs peer figures and the ratio segzoo / peer."""
    s = result["settings"]
    lines = [f"# segzoo benchmark: {result['device']}", "",
             f"Input {s['size'][0]}x{s['size'][1]}, batch {s['batch']}; median of {s['repeats']} x {s['iters']} "
             f"timed calls after {s['warmup']} warm-up, interleaved with the peer in one process. "
             f"Versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items())}. {result['date']}.", ""]
    if result.get("bf16_matmul_peak_tflops"):
        peak = result["bf16_matmul_peak_tflops"]
        lines += [f"Measured bf16 dense matmul peak: {peak:.0f} TFLOP/s (MFU denominator).", ""]
    rows = result["rows"]
    eager_peer = {r["pair"]: r for r in rows if r["side"] == "peer" and r["mode"] == "eager"}
    header = ("| pair | mode | segzoo img/s | peer img/s | ratio | vs peer eager | segzoo p50 / p95 ms | "
              "peer p50 / p95 ms | peak MiB segzoo / peer | GFLOPs | params |")
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    errors = [r for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    for pair in dict.fromkeys(r["pair"] for r in rows):
        for mode in dict.fromkeys(r["mode"] for r in rows if r["pair"] == pair):
            ours = next((r for r in rows if r["pair"] == pair and r["mode"] == mode and r["side"] == "segzoo"), None)
            peer = next((r for r in rows if r["pair"] == pair and r["mode"] == mode and r["side"] == "peer"), None)
            if ours is None:
                continue
            base = eager_peer.get(pair)
            ratio = f"{ours['images_per_s'] / peer['images_per_s']:.2f}x" if peer else "-"
            vs_eager = (f"{ours['images_per_s'] / base['images_per_s']:.2f}x"
                        if base and not mode.startswith("train") else "-")
            def mib(row):
                return f"{row['peak_memory_mb']:.0f}" if row and row.get("peak_memory_mb") is not None else "-"

            mem = f"{mib(ours)} / {mib(peer)}" if "peak_memory_mb" in ours else "-"
            lat = f"{ours['latency_ms_p50']:.1f} / {ours['latency_ms_p95']:.1f}"
            plat = f"{peer['latency_ms_p50']:.1f} / {peer['latency_ms_p95']:.1f}" if peer else "-"
            mfu = f" (MFU {ours['mfu']:.0%})" if "mfu" in ours else ""
            lines.append(
                f"| {pair} | {mode} | {ours['images_per_s']:.2f}{mfu} | {peer['images_per_s']:.2f} |" if peer else
                f"| {pair} | {mode} | {ours['images_per_s']:.2f}{mfu} | - |"
            )
            lines[-1] += (f" {ratio} | {vs_eager} | {lat} | {plat} | {mem} | {ours['flops'] / 1e9:.0f} "
                          f"| {ours['params'] / 1e6:.1f}M |")
    lines += [f"Failed: {r['pair']} {r['mode']}: {r['error']}" for r in errors]
    lines += ["", "ratio: segzoo / peer in the same mode; vs peer eager: segzoo in this mode / the peer's eager fp32.",
              "Peak memory: CUDA max allocated on GPU, the process's peak RSS during the timed calls on CPU.", ""]
    return "\n".join(lines)


def bar_chart(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if not r["mode"].startswith("train") and "error" not in r]
    labels = list(dict.fromkeys(f"{r['pair']}\n{r['mode']}" for r in rows))
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(labels)), 4.5))
    width = 0.4
    for k, side in enumerate(("segzoo", "peer")):
        values = [next((r["images_per_s"] for r in rows if f"{r['pair']}\n{r['mode']}" == lab and r["side"] == side), 0)
                  for lab in labels]
        ax.bar([i + (k - 0.5) * width for i in range(len(labels))], values, width, label=side)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("images / s")
    size = result["settings"]["size"]
    ax.set_title(f"segzoo vs peers: {result['device']}, {size[0]}x{size[1]}, "
                 f"batch {result['settings']['batch']}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="segzoo bench", description="segzoo vs smp / torchvision, same process.")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--modes", nargs="+", default=None, help=f"from {list(MODES)}")
    p.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="input size (default 512 512)")
    p.add_argument("--batch", type=int, default=None, help="default 8 on GPU, 2 on CPU")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-train", action="store_true", help="skip training-step measurements")
    p.add_argument("--output", default="benchmarks/results", help="folder for JSON, markdown and PNG")
    p.add_argument("--tag", default=None, help="file name stem (default: device and size)")
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    modes = args.modes or (["eager", "channels_last", "bf16", "compile", "fast", "fast_compile"] if gpu
                           else ["eager", "channels_last", "fast", "fast_compile"])
    size = tuple(args.size or (512, 512))
    batch = args.batch or (8 if gpu else 2)
    result = run(args.pairs, modes, args.device, size, batch, args.repeats, args.iters, args.warmup, not args.no_train)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.tag or f"{'gpu' if gpu else 'cpu'}_{size[0]}x{size[1]}_b{batch}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
    try:
        bar_chart(result, out / f"{stem}.png")
    except ImportError:
        print(f"bar chart skipped: matplotlib is not installed ({install_hint('plots')})")
    print(markdown(result))
    return 0
