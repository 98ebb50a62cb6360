"""pytest-benchmark suite, ``pytest benchmarks/ --benchmark-only``: every provider × n × mode on this
machine's device (CUDA if present, else CPU), p = q = 64, float32. Sweeps, memory and plots: ``python -m
benchmarks sweep``."""

from __future__ import annotations

import pytest
import torch

from benchmarks import harness

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("mode", harness.MODES)
@pytest.mark.parametrize("n", {"cpu": (128, 256), "cuda": (1024, 4096)}[DEVICE])
@pytest.mark.parametrize("provider", harness.PROVIDERS)
def test_loss(benchmark, provider: str, n: int, mode: str) -> None:
    if (reason := harness.unavailable_reason(provider, DEVICE)) is not None:
        pytest.skip(reason)
    if provider.startswith("reference") and harness.predicted_reference_bytes(n) > 4 * 2**30:
        pytest.skip("the reference would need more than its default cap of 4 GiB")
    point = harness.Point(provider, mode, n, 64, 64, "float32", DEVICE)
    call = harness.build_call(point, harness.make_inputs(point))
    try:
        harness.wall_seconds(call, DEVICE)  # warm-up, outside the timings: compiles kernels and graphs
        benchmark.group = f"{mode} n={n}"
        benchmark.extra_info["sigmoid_evaluations"] = harness.sigmoid_evaluations(n, mode)
        benchmark.pedantic(harness.wall_seconds, args=(call, DEVICE), rounds=5, iterations=1)
    finally:
        if provider in harness.COMPILED:
            torch._dynamo.reset()  # this test's compiled graphs only; the next test compiles its own
