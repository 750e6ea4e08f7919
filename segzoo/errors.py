"""Deprecated: moved to ``segzoo.core.errors`` (this path works until segzoo 0.4)."""

from segzoo._moved import alias

alias(__name__)
