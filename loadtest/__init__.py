"""Load and throughput benchmarks for the gifting server (not tests; run them by hand)."""
