"""Deployment: ONNX export checked against PyTorch (``onnx.py``); more formats and INT8 to come."""

from segzoo.deploy.onnx import ExportError, check_onnx, export_onnx, load_source

__all__ = ["ExportError", "check_onnx", "export_onnx", "load_source"]
