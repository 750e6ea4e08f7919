"""Foundations: errors, atomic file io, configs, the registries, model outputs, weight specs, device choice,
timing and progress.
May import: nothing else of segzoo (and nothing heavy at import: torch only where a module needs it).
"""
