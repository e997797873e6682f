"""Benchmarks: each reports our path as a ratio against a bare baseline run side by side."""
