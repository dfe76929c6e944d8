"""Benchmark suite: cost per event, throughput against the physical baseline, cold start."""
