"""pytest-benchmark suite: ``pytest benchmarks/ --benchmark-only``.

Every provider × n × mode on this machine's device (CUDA if present, else CPU), p = q = 64,
float32. Providers unavailable on the device, eager-reference sizes above its memory cap and
points that run out of GPU memory are skipped with the reason. For sweeps, memory and plots use
``python -m benchmarks.report``.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from pc_kernels import reference

from .point import Point, build_call
from .providers import PROVIDERS, predicted_reference_bytes, unavailable_reason
from .throughput import MODES, sigmoid_evaluations

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SIZES = {"cpu": (128, 256), "cuda": (1024, 4096)}[DEVICE]
DIM = 64


def _synchronized(call: Callable[[], None]) -> Callable[[], None]:
    if DEVICE != "cuda":
        return call

    def synchronized_call() -> None:
        call()
        torch.cuda.synchronize()

    return synchronized_call


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_loss(benchmark, provider: str, n: int, mode: str) -> None:
    reason = unavailable_reason(provider, DEVICE)
    if reason is not None:
        pytest.skip(reason)
    need = predicted_reference_bytes(provider, n, DIM, DIM)
    if need is not None and need > reference.memory_limit_bytes():
        pytest.skip(f"the eager reference would need about {need / 2**30:.3g} GiB, above its cap")
    call = _synchronized(build_call(Point(provider, mode, n, DIM, DIM, "float32", DEVICE)))
    try:
        call()  # warm-up, outside the timings: compiles kernels / graphs
    except torch.cuda.OutOfMemoryError as error:
        pytest.skip(f"out of memory: {str(error).splitlines()[0]}")
    benchmark.group = f"{mode} n={n}"
    benchmark.extra_info["sigmoid_evaluations"] = sigmoid_evaluations(n, mode)
    benchmark.pedantic(call, rounds=5, iterations=1)
