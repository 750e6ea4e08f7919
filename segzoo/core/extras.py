"""segzoo's optional extras, for the messages that name one when a package is missing.

The distribution is ``segzoo-pytorch`` and is installed from the repository: PyPI's ``segzoo`` is an unrelated
project, so a hint never asks pip for that name: it names the packages themselves, which come from PyPI under
their own names, and the extra to use from a checkout.
"""

from __future__ import annotations

__all__ = ["DISTRIBUTION", "EXTRAS", "install_hint"]

DISTRIBUTION = "segzoo-pytorch"

# the optional dependencies of pyproject.toml, less the test extra (tests/test_newcomer_traps.py holds them equal)
EXTRAS: dict[str, tuple[str, ...]] = {
    "plots": ("matplotlib",),
    "tensorboard": ("tensorboard",),
    "export": ("onnx", "onnxscript", "onnxruntime"),
    "compress": ("torch-pruning",),
    "openvino": ("openvino", "nncf", "onnx", "onnxscript", "onnxruntime"),
    "app": ("gradio",),
    "docs": ("mkdocs", "mkdocs-material", "mkdocstrings[python]"),
}


def install_hint(extra: str) -> str:
    """How to install ``extra``: its packages by name, or the extra from a segzoo checkout."""
    return f"pip install {' '.join(EXTRAS[extra])} (or, in a segzoo checkout, pip install -e '.[{extra}]')"
