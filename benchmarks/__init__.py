"""segzoo's benchmarks: honest side-by-side measurements, run as ``python -m benchmarks ...``."""
