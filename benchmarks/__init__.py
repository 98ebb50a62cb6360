"""Benchmarks of pc_kernels against what a user would use instead.

``python -m benchmarks.report`` sweeps batch sizes and writes results, plots and a table under
``benchmarks/results/<device-tag>/``; ``python -m benchmarks.readme_table`` rewrites the README's
benchmark block from those stored results; ``pytest benchmarks/ --benchmark-only`` runs a small
pytest-benchmark suite.
"""
