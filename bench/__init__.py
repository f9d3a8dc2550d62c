"""Benchmarks: `./dev bench` runs them and rewrites docs/benchmarks.md."""
