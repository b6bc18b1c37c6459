"""Benchmarks: stock Demucs against this service, memory by song length, the CPU defaults
and the GPU checks."""
