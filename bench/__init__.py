"""Benchmarks of fleet against the layouts a user would otherwise deploy (`make bench`)."""
