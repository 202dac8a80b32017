"""`make bench` / `python -m bench`: side-by-side performance comparisons of the suite.

Every comparison runs its variants in alternating rounds inside one run (A B, B A,
A B, ...), so drift on a shared machine hits both. Results land in bench/results/:
bench.json, bench.md (each value next to its target) and PNG plots. See
docs/performance.md for the method, the targets and the last figures.
"""
