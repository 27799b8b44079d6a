"""Time and memory of MANO against window and global attention (tooling; `scripts/benchmark.py` runs it)."""
