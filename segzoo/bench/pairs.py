"""Deprecated: moved to ``benchmarks.pairs``
(this path works until segzoo 0.4, from a checkout of the repository)."""

from segzoo._moved import alias

alias(__name__)
