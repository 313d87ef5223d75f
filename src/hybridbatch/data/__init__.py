"""Benchmarks, training groups and their on-disk layouts."""
