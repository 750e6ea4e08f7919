"""Deprecated: moved to ``segzoo.training.losses`` (this path works until segzoo 0.4)."""

from segzoo._moved import alias

alias(__name__)
