"""Deployment: ONNX export checked against PyTorch (``onnx.py``), static INT8 for CPUs (``quantize.py``)."""

from segzoo.deploy.onnx import ExportError, check_onnx, export_onnx, load_source
from segzoo.deploy.quantize import cpu_int8_support, quantize_onnx

__all__ = ["ExportError", "check_onnx", "export_onnx", "load_source", "quantize_onnx", "cpu_int8_support"]
