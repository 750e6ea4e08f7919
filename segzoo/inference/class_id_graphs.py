"""The predict form of an exported graph: uint8 images in, class ids out, all inside the runtime.

``predict`` of one image at its own size needs no logits: only their argmax. Done around the graph in PyTorch, the
normalisation before it and the argmax after it cost a few milliseconds each, and PyTorch's threads, still
spinning after those small steps, slow the runtime's own threads on the same cores. So each runtime builds, from
the file's graph, a second graph that normalises uint8 NCHW images with the file's preprocessing (the formula of
:func:`segzoo.data.normalize.scale_shift`) and ends in the argmax over classes (``logit > 0`` for one channel, as
:func:`segzoo.core.outputs.class_ids`). The file's own graph still serves logits (tiling, TTA, ``m(x)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segzoo.core.config import Preprocessing
from segzoo.data.normalize import scale_shift

__all__ = ["onnx_class_id_graph", "openvino_class_id_model", "CLASS_IDS"]

CLASS_IDS = "class_ids"  # the predict form's output; its input keeps the file's input name
_PREFIX = "segzoo_predict_"  # names of the nodes and constants the predict form adds


def _constants(pre: Preprocessing, channels: int) -> tuple[np.ndarray, np.ndarray]:
    scale, shift = scale_shift(pre, channels)
    return (np.asarray(scale, np.float32).reshape(1, -1, 1, 1), np.asarray(shift, np.float32).reshape(1, -1, 1, 1))


def onnx_class_id_graph(onnx_bytes: bytes, pre: Preprocessing, uint8_input: bool, binary: bool) -> bytes:
    """An ONNX graph (bytes) taking the uint8 images ``onnx_bytes``'s graph is meant for and returning their
    class ids ``(N, H, W)`` int64; ``uint8_input``: the graph normalises its input itself already."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load_from_string(onnx_bytes)
    graph = proto.graph
    source, logits = graph.input[0], graph.output[0].name
    if not uint8_input:
        image = _PREFIX + "image"
        scale, shift = _constants(pre, source.type.tensor_type.shape.dim[1].dim_value or len(pre.mean))
        graph.initializer.extend([numpy_helper.from_array(scale, _PREFIX + "scale"),
                                  numpy_helper.from_array(shift, _PREFIX + "shift")])
        prelude = [helper.make_node("Cast", [image], [_PREFIX + "float"], to=TensorProto.FLOAT),
                   helper.make_node("Mul", [_PREFIX + "float", _PREFIX + "scale"], [_PREFIX + "scaled"]),
                   helper.make_node("Add", [_PREFIX + "scaled", _PREFIX + "shift"], [source.name])]
        for node in reversed(prelude):
            graph.node.insert(0, node)
        replacement = onnx.ValueInfoProto()
        replacement.CopyFrom(source)
        replacement.name = image
        replacement.type.tensor_type.elem_type = TensorProto.UINT8
        graph.input.remove(source)
        graph.input.insert(0, replacement)
    if binary:
        graph.initializer.extend([numpy_helper.from_array(np.zeros((), np.float32), _PREFIX + "zero"),
                                  numpy_helper.from_array(np.array([1], np.int64), _PREFIX + "axis")])
        graph.node.extend([
            helper.make_node("Squeeze", [logits, _PREFIX + "axis"], [_PREFIX + "logit"]),
            helper.make_node("Greater", [_PREFIX + "logit", _PREFIX + "zero"], [_PREFIX + "positive"]),
            helper.make_node("Cast", [_PREFIX + "positive"], [CLASS_IDS], to=TensorProto.INT64)])
    else:
        graph.node.append(helper.make_node("ArgMax", [logits], [CLASS_IDS], axis=1, keepdims=0))
    dims = [d for i, d in enumerate(graph.output[0].type.tensor_type.shape.dim) if i != 1]
    del graph.output[:]
    output = helper.make_tensor_value_info(CLASS_IDS, TensorProto.INT64, None)
    output.type.tensor_type.shape.dim.extend(dims)
    graph.output.append(output)
    return proto.SerializeToString()


def openvino_class_id_model(ov_model: Any, pre: Preprocessing, uint8_input: bool, binary: bool) -> Any:
    """A copy of the OpenVINO model ``ov_model`` taking uint8 images and returning their class ids ``(N, H, W)``
    (int32); ``uint8_input``: the model normalises its input itself already."""
    import openvino as ov
    import openvino.opset13 as ops
    from openvino.preprocess import PrePostProcessor

    model = ov_model.clone()
    ppp = PrePostProcessor(model)
    if not uint8_input:
        channels = model.inputs[0].get_partial_shape()[1]
        scale, shift = _constants(pre, channels.get_length() if channels.is_static else len(pre.mean))
        ppp.input().tensor().set_element_type(ov.Type.u8)
        ppp.input().preprocess().convert_element_type(ov.Type.f32).custom(
            lambda node: ops.add(ops.multiply(node, ops.constant(scale)), ops.constant(shift)).output(0))

    def class_ids(node: Any) -> Any:
        if binary:
            positive = ops.greater(ops.squeeze(node, ops.constant(np.array([1], np.int64))),
                                   ops.constant(np.zeros((), np.float32)))
            return ops.convert(positive, "i32").output(0)
        top = ops.topk(node, ops.constant(np.int64(1)), axis=1, mode="max", sort="none", index_element_type="i32")
        return ops.squeeze(top.output(1), ops.constant(np.array([1], np.int64))).output(0)

    ppp.output().postprocess().custom(class_ids)
    return ppp.build()
