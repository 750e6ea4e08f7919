"""Loaders for ``segzoo.core.timing.median_ms_in_own_process``'s tests, run in its child process."""

from __future__ import annotations

import sys

import torch


def identity_if_alone(threads: int, absent: str) -> torch.nn.Module:
    """An identity model, if the child runs ``threads`` threads and has not imported the module ``absent``;
    otherwise a RuntimeError saying which did not hold."""
    if torch.get_num_threads() != threads:
        raise RuntimeError(f"child runs {torch.get_num_threads()} threads, not {threads}")
    if absent in sys.modules:
        raise RuntimeError(f"child has {absent} imported")
    return torch.nn.Identity()
