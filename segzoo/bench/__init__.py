"""Benchmarks of segzoo against its peers (``segzoo bench``, ``python -m benchmarks``)."""
