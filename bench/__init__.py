"""Benchmarks of the runtime. `python -m bench [name ...]` runs them; see bench/README.md."""
