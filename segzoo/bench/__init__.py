"""Deprecated: the benchmark programs live in the repository's ``benchmarks/`` (``python -m benchmarks``), the timing
that production code uses in ``segzoo.core.timing``. The old submodules work until segzoo 0.4."""

import warnings

warnings.warn("segzoo.bench moved: the benchmarks to the repository's benchmarks/, the timing helpers to "
              "segzoo.core.timing; the old path works until segzoo 0.4", DeprecationWarning, stacklevel=2)
