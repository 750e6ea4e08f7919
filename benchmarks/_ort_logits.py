"""Logits of an ONNX file on saved inputs, in a process that imports only numpy and onnxruntime, so that it starts
in seconds under an emulated CPU (``benchmarks.int8_avx2_emulated`` runs it natively and emulated):

    python benchmarks/_ort_logits.py MODEL.onnx INPUTS.npz OUT.npz

``INPUTS.npz`` holds float32 (1, C, H, W) arrays; ``OUT.npz`` gets each one's logits (float32) under the same key.
onnxruntime runs with segzoo's session options on one thread (two of these share a 2-core machine).
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort


def logits(model: str, inputs: str, out: str) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    with np.load(inputs) as arrays:
        results = {key: session.run(None, {name: arrays[key]})[0] for key in arrays.files}
    np.savez(out, **results)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    logits(*sys.argv[1:])
