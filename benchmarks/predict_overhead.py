"""What ``predict`` costs around the graph, per runtime: the whole ``m.predict(uint8 image)`` of one image against
the graph's own run on the input it is fed, timed round-robin in one process (ratios within a round).

    python -m benchmarks.predict_overhead [--weights deeplabv3plus_mnv2.camvid] [--size 360 480] [--rounds 8]

Runtimes: the torch fast path (``model.predict`` vs ``optimize(model)(x)``), onnxruntime fp32 and INT8
(``OnnxModel`` / ``QuantizedModel.predict`` vs ``session.run``), OpenVINO fp32 and INT8 where the extra is
installed. Goal (issue 47): every ratio <= 1.15. Results: ``benchmarks/results/predict_overhead_<cpu>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._report import cpu_description
from benchmarks.measure import round_robin_seconds

GOAL = 1.15


def _pairs(model: Any, image: np.ndarray, tmp: Path, openvino: bool) -> dict[str, tuple[Any, Any]]:
    """runtime -> (predict call, graph call), each a zero-argument function."""
    from segzoo.data.normalize import normalize
    from segzoo.deploy import export_onnx, quantize
    from segzoo.inference.fast import optimize
    from segzoo.inference.runtime import OnnxModel

    chw = torch.from_numpy(image).permute(2, 0, 1)[None]
    x = normalize(chw, model.meta.preprocessing)
    fast = optimize(model)
    pairs = {"torch fast path": (lambda: model.predict(image), lambda: fast(x))}
    size = tuple(image.shape[:2])
    export_onnx(model, tmp / "fp32.onnx", example_size=size)
    fp32 = OnnxModel.load(tmp / "fp32.onnx")
    array = x.numpy()
    pairs["onnxruntime fp32"] = (lambda: fp32.predict(image),
                                 lambda: fp32.session.run(None, {fp32.input_name: array}))
    int8 = quantize(model, [image], example_size=size)
    feed = chw.numpy() if int8.uint8_input else array
    pairs["onnxruntime int8"] = (lambda: int8.predict(image), lambda: int8.session.run(None, {int8.input_name: feed}))
    if openvino:
        from segzoo.deploy.openvino import export_openvino, quantize_openvino
        from segzoo.inference.runtime import OpenVinoModel

        export_openvino(model, tmp / "fp32.xml", example_size=size)
        quantize_openvino(model, [image], tmp / "int8.xml", example_size=size)
        for name in ("fp32", "int8"):
            ov = OpenVinoModel.load(tmp / f"{name}.xml")
            ov_feed = chw.numpy() if ov.uint8_input else array
            pairs[f"openvino {name}"] = (lambda ov=ov: ov.predict(image), lambda ov=ov, f=ov_feed: ov.compiled(f))
    return pairs


def measure(weights: str, size: tuple[int, int], rounds: int, openvino: bool) -> dict[str, Any]:
    import segzoo

    model = segzoo.from_pretrained(weights).eval()
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        pairs = _pairs(model, image, Path(tmp), openvino)
        fns = {f"{name}|{part}": fn for name, pair in pairs.items() for part, fn in zip(("predict", "graph"), pair)}
        times = round_robin_seconds(fns, rounds, block=3)
    for name in pairs:
        ratios = [statistics.median(p) / statistics.median(g)
                  for p, g in zip(times[f"{name}|predict"], times[f"{name}|graph"])]
        rows[name] = {"predict_ms": round(1000 * statistics.median(sum(times[f"{name}|predict"], [])), 2),
                      "graph_ms": round(1000 * statistics.median(sum(times[f"{name}|graph"], [])), 2),
                      "overhead": round(statistics.median(ratios), 3)}
    return {"cpu": cpu_description(), "weights": weights, "size": list(size), "rounds": rounds, "goal": GOAL,
            "runtimes": rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="deeplabv3plus_mnv2.camvid")
    parser.add_argument("--size", type=int, nargs=2, default=(360, 480))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--no-openvino", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = measure(args.weights, tuple(args.size), args.rounds, not args.no_openvino)
    for name, row in result["runtimes"].items():
        print(f"{name:18} predict {row['predict_ms']:8.2f} ms  graph {row['graph_ms']:8.2f} ms  "
              f"overhead {row['overhead']:.3f}x")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
