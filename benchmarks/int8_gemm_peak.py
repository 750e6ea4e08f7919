"""The ceiling of INT8 on this CPU: onnxruntime's INT8 matrix product against its fp32 one, on one large product
with constant weights (the shape of a convolution's inner loop) and nothing else in the graph, the kinds timed in
interleaved rounds so that the machine's drift falls on each alike. A model's INT8 speed-up over
the same runtime's fp32 can approach this ratio, never pass it: where it is near 1 (an AVX2 CPU whose vector integer
multiplies run at its float FMAs' rate), no calibration or weight type makes INT8 a speed-up there, and the fastest
deployment is an fp32 file. Each kind of CPU keeps its own results file in ``benchmarks/results/int8_gemm_peak/``:

    python -m benchmarks.int8_gemm_peak
    python -m benchmarks.as_avx2 python -m benchmarks.int8_gemm_peak   # the same CPU's AVX2 kernels
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import cpu_description, write_result
from benchmarks.measure import round_robin_seconds

RESULTS_DIR = Path("benchmarks/results/int8_gemm_peak")
KINDS = {  # activation, weight: what each onnxruntime INT8 file type runs (u8 x s8 with signed weights)
    "fp32": (np.float32, np.float32),
    "u8 x s8": (np.uint8, np.int8),
    "u8 x u8": (np.uint8, np.uint8),
}
# Signed weights are drawn 7-bit, as files for CPUs without VNNI hold them: the same kernel, and products that stay
# exact where AVX2's u8 x s8 instruction would saturate full 8-bit ones.
WEIGHT_RANGE = {np.int8: (-64, 63), np.uint8: (0, 255)}


def product_graph(kind: str, m: int, k: int, n: int, seed: int = 0) -> bytes:
    """An ONNX graph of one ``m x k`` by constant ``k x n`` product: MatMul in fp32, MatMulInteger otherwise."""
    from onnx import TensorProto, helper, numpy_helper

    a_type, w_type = KINDS[kind]
    rng = np.random.default_rng(seed)
    if w_type is np.float32:
        weights = rng.standard_normal((k, n)).astype(np.float32)
    else:
        low, high = WEIGHT_RANGE[w_type]
        weights = rng.integers(low, high + 1, (k, n)).astype(w_type)
    elem = {np.float32: TensorProto.FLOAT, np.uint8: TensorProto.UINT8}[a_type]
    op = "MatMul" if kind == "fp32" else "MatMulInteger"
    out_type = TensorProto.FLOAT if kind == "fp32" else TensorProto.INT32
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "w"], ["y"])], f"{op}_{m}x{k}x{n}",
        [helper.make_tensor_value_info("a", elem, [m, k])], [helper.make_tensor_value_info("y", out_type, [m, n])],
        [numpy_helper.from_array(weights, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def measure(m: int, k: int, n: int, rounds: int) -> dict[str, Any]:
    """Median milliseconds and GOPS (two operations per multiply-add) of each kind's product over ``rounds``
    interleaved rounds of 5 calls, and each INT8 kind's speed over fp32."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle sessions leave the cores free
    rng = np.random.default_rng(1)
    fns = {}
    for kind, (a_type, _) in KINDS.items():
        session = ort.InferenceSession(product_graph(kind, m, k, n), options, providers=["CPUExecutionProvider"])
        a = (rng.standard_normal((m, k)).astype(np.float32) if a_type is np.float32
             else rng.integers(0, 256, (m, k)).astype(np.uint8))
        fns[kind] = lambda s=session, feed={"a": a}: s.run(None, feed)
    seconds = round_robin_seconds(fns, rounds)
    rows: dict[str, Any] = {}
    for kind, per_round in seconds.items():
        ms = 1000 * float(np.median([t for times in per_round for t in times]))
        rows[kind] = {"ms": round(ms, 3), "gops": round(2 * m * k * n / ms / 1e6, 1)}
    for kind in KINDS:
        if kind != "fp32":
            rows[kind]["speed_vs_fp32"] = round(rows["fp32"]["ms"] / rows[kind]["ms"], 2)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(1024, 1152, 256), metavar=("M", "K", "N"),
                        help="rows (output pixels), inner size (3x3 x input channels), columns (output channels); "
                             "default: a 3x3 convolution of 128 to 256 channels over 32x32 pixels")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds of 5 timed calls per kind")
    parser.add_argument("--output", help=f"results file (default: {RESULTS_DIR}/<cpu>_<isa tier>.json)")
    args = parser.parse_args(argv)
    if min(args.shape) < 1 or args.rounds < 1:
        parser.error(f"--shape and --rounds take positive numbers, got {args.shape} and {args.rounds}")
    from benchmarks.deploy import results_file

    cpu = cpu_description()
    result = {"cpu": cpu, "shape_mkn": list(args.shape), "rounds": args.rounds,
              "runtime": "onnxruntime CPUExecutionProvider", "products": measure(*args.shape, args.rounds)}
    return write_result(result, args.output or results_file(cpu, RESULTS_DIR), ["products"])


if __name__ == "__main__":
    main()
