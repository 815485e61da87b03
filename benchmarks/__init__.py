"""Benchmarks: each source's full load, no-op rerun and changed rerun against its emulator,
side by side with a naive baseline (the same calls one after another, Arrow straight into DuckDB).

Run with `python -m benchmarks` (`make bench`); see `benchmarks/README.md`.
"""
