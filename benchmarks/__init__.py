"""Benchmarks of pc_kernels against what a user would run instead: ``python -m benchmarks <subcommand>``
(see ``benchmarks/__main__.py``), ``pytest benchmarks/ --benchmark-only``, and ``benchmarks/gpu_check.sh``."""
