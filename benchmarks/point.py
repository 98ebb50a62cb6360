"""Measure one benchmark point: one provider, mode, batch size, feature sizes and dtype.

In-process use: ``measure_point(point, settings)``. As a worker process (how CPU points run, one
fresh process each, so that peak memory is sound):

    python -m benchmarks.point POINT_JSON RESULT_PATH READY_PATH

writes its resident memory once the inputs exist to READY_PATH (for the parent's memory guard)
and the measurement as JSON to RESULT_PATH.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy
import torch

from pc_kernels import reference

from .memory import peak_bytes_of, rss_bytes
from .providers import check_provider, loss_function
from .throughput import check_mode

_UNCAPPED_BYTES = 2**62

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Point:
    """One benchmark point: student (n, p) with grad, teacher (n, q) without, both of ``dtype``."""

    provider: str
    mode: str
    n: int
    p: int
    q: int
    dtype: str
    device: str

    def checked(self) -> "Point":
        """Return self, or raise a ValueError naming the first bad field and its accepted values."""
        check_provider(self.provider)
        check_mode(self.mode)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda'; got {self.device!r}")
        if self.n < 3 or self.p < 1 or self.q < 1:
            raise ValueError(f"need n >= 3 and p, q >= 1; got n={self.n}, p={self.p}, q={self.q}")
        return self


@dataclass(frozen=True)
class Settings:
    """How long and how much one point may take.

    time_limit_s: the longest one steady-state call may take; a slower point is "too slow".
    repeat_budget_s: steady-state calls are repeated while they fit in this time ...
    min_repeats, max_repeats: ... but at least min_repeats and at most max_repeats times.
    """

    time_limit_s: float
    repeat_budget_s: float
    min_repeats: int
    max_repeats: int


@dataclass(frozen=True)
class Measurement:
    """What one point gave. ``status`` is "ok", "oom", "skipped" or "error"; ``note`` says why.

    Times are seconds (median and 20th/80th percentiles of ``samples`` steady-state calls; the
    first call, which compiles or JIT-builds kernels, is excluded and reported as
    ``first_call_s``); ``peak_bytes`` is the peak memory of one call above its inputs.
    """

    status: str
    note: str = ""
    median_s: float | None = None
    p20_s: float | None = None
    p80_s: float | None = None
    samples: int = 0
    first_call_s: float | None = None
    peak_bytes: int | None = None


def _elapsed_s(call: Callable[[], None], device: str) -> float:
    if device == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    call()
    return time.perf_counter() - begin


def _first_call_s(call: Callable[[], None], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    begin = time.perf_counter()
    call()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - begin


def _is_out_of_memory(error: BaseException) -> bool:
    # torch.compile wraps errors raised while compiling, so the message is checked too.
    message = str(error).lower()
    return (
        isinstance(error, torch.cuda.OutOfMemoryError)
        or "out of memory" in message
        or "can't allocate memory" in message
    )


def _first_line(error: BaseException, limit: int) -> str:
    return (str(error).splitlines() or [""])[0][:limit]


def _timed(point: Point, settings: Settings, call: Callable[[], None]) -> Measurement:
    first = _first_call_s(call, point.device)
    samples: list[float] = []
    peak = peak_bytes_of(lambda: samples.append(_elapsed_s(call, point.device)), point.device)
    if samples[0] > settings.time_limit_s:
        return Measurement(
            "skipped",
            f"skipped (too slow: one call took {samples[0]:.3g} s > limit {settings.time_limit_s:g} s)",
            first_call_s=first,
        )
    repeats = int(settings.repeat_budget_s / max(samples[0], 1e-9))
    repeats = min(max(repeats, settings.min_repeats), settings.max_repeats)
    samples += [_elapsed_s(call, point.device) for _ in range(repeats - 1)]
    p20, median, p80 = (float(q) for q in numpy.percentile(samples, [20, 50, 80]))
    return Measurement(
        "ok",
        median_s=median,
        p20_s=p20,
        p80_s=p80,
        samples=len(samples),
        first_call_s=first,
        peak_bytes=peak,
    )


def build_call(point: Point) -> Callable[[], None]:
    """Make the point's inputs (seeded normal features) and return one loss call on them.

    The call runs the provider's forward ("fwd", with the student requiring grad, as in
    training) or forward and backward ("fwd_bwd", clearing the student's grad first). It does
    not synchronize a GPU.
    """
    point.checked()
    if point.provider == "reference_compiled":
        torch._dynamo.reset()
    generator = torch.Generator(device="cpu").manual_seed(point.n)
    dtype = DTYPES[point.dtype]
    student = torch.randn(point.n, point.p, generator=generator).to(point.device, dtype).requires_grad_()
    teacher = torch.randn(point.n, point.q, generator=generator).to(point.device, dtype)
    loss_fn = loss_function(point.provider)

    def call() -> None:
        if point.mode == "fwd":
            loss_fn(student, teacher)
            return
        student.grad = None
        loss_fn(student, teacher).backward()

    return call


def measure_point(point: Point, settings: Settings, ready: Callable[[], None] | None = None) -> Measurement:
    """Time and measure one point; out-of-memory and other failures become "oom"/"error" results.

    ``ready`` (optional) is called once the inputs exist, before the first loss call.
    """
    # The harness guards memory itself (the runner predicts the eager reference's n³ footprint
    # and watches or catches the rest), so the reference's own size cap is lifted here.
    reference.set_memory_limit(_UNCAPPED_BYTES)
    try:
        call = build_call(point)
        if ready is not None:
            ready()
        return _timed(point, settings, call)
    except Exception as error:  # noqa: BLE001 - every failure becomes a recorded cell
        if _is_out_of_memory(error):
            return Measurement("oom", f"OOM ({_first_line(error, 120)})")
        return Measurement("error", f"error ({type(error).__name__}: {_first_line(error, 160)})")


def _worker(point_json: str, result_path: str, ready_path: str) -> None:
    fields = json.loads(point_json)
    torch.set_num_threads(fields.pop("threads"))
    settings = Settings(**fields.pop("settings"))
    point = Point(**fields)

    def ready() -> None:
        with open(ready_path + ".partial", "w", encoding="ascii") as out:
            out.write(str(rss_bytes()))
        os.replace(ready_path + ".partial", ready_path)

    measurement = measure_point(point, settings, ready)
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump(asdict(measurement), out)


if __name__ == "__main__":
    _worker(*sys.argv[1:4])
