"""Deployment: ONNX export checked against PyTorch (``onnx.py``), static INT8 for CPUs (``quantize.py``)."""

from segzoo.deploy.onnx import ExportError, check_onnx, export_onnx, load_source
from segzoo.deploy.quantize import (
           QuantizedModel,
           cpu_int8_support,
           quantize,
           quantize_to_file,
)

__all__ = ["ExportError", "check_onnx", "export_onnx", "load_source", "quantize", "quantize_to_file",
           "QuantizedModel", "cpu_int8_support"]
