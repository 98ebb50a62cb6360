"""Measure one benchmark point: one provider, mode, batch size, feature sizes and dtype.

In-process use: ``measure_point(point, settings)``. As a worker process (how CPU points run, one
fresh process each, so that peak memory is sound):

    python -m benchmarks.point POINT_JSON RESULT_PATH READY_PATH

writes its resident memory once the inputs exist to READY_PATH (for the parent's memory guard)
and the measurement as JSON to RESULT_PATH.

After the timing (outside the timed calls and the memory measurement), a point of one of our
providers that ran also gets its accuracy on its own inputs (``accuracy``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy
import torch

from pc_kernels import reference

from .memory import peak_bytes_of, relax_cpu_allocator, rss_bytes
from .providers import OURS, check_provider, loss_function
from .throughput import check_mode

_UNCAPPED_BYTES = 2**62

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Reference rows the accuracy of a point is measured on by default: rows=(0, min(n, ACCURACY_ROWS)).
ACCURACY_ROWS = 256


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
    accuracy_rows: our providers' accuracy is measured on reference rows 0 .. min(n, accuracy_rows) − 1
        (0: not measured).
    """

    time_limit_s: float
    repeat_budget_s: float
    min_repeats: int
    max_repeats: int
    accuracy_rows: int = ACCURACY_ROWS


@dataclass(frozen=True)
class Measurement:
    """What one point gave. ``status`` is "ok", "oom", "skipped" or "error"; ``note`` says why.

    Times are seconds (median and 20th/80th percentiles of ``samples`` steady-state calls; the
    first call, which compiles or JIT-builds kernels, is excluded and reported as
    ``first_call_s``); ``peak_bytes`` is the peak memory of one call above its inputs.
    ``loss_rel_error`` and ``grad_cosine`` (our providers only) are its accuracy on
    ``accuracy_rows`` reference rows (see ``accuracy``).
    """

    status: str
    note: str = ""
    median_s: float | None = None
    p20_s: float | None = None
    p80_s: float | None = None
    samples: int = 0
    first_call_s: float | None = None
    peak_bytes: int | None = None
    accuracy_rows: int | None = None
    loss_rel_error: float | None = None
    grad_cosine: float | None = None


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
    """First call (warm-up), one call for peak memory, then the timed calls; on CPU the allocator
    is relaxed between the last two (``benchmarks.memory``)."""
    first = _first_call_s(call, point.device)
    peak = peak_bytes_of(call, point.device)
    if point.device == "cpu":
        relax_cpu_allocator()
    samples = [_elapsed_s(call, point.device)]
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


def make_inputs(point: Point) -> tuple[torch.Tensor, torch.Tensor]:
    """The point's inputs: seeded normal features (the same for every provider), student requiring grad."""
    point.checked()
    generator = torch.Generator(device="cpu").manual_seed(point.n)
    dtype = DTYPES[point.dtype]
    student = torch.randn(point.n, point.p, generator=generator).to(point.device, dtype).requires_grad_()
    teacher = torch.randn(point.n, point.q, generator=generator).to(point.device, dtype)
    return student, teacher


def build_call(point: Point, inputs: tuple[torch.Tensor, torch.Tensor] | None = None) -> Callable[[], None]:
    """Return one loss call on the point's inputs (``make_inputs(point)`` unless given).

    The call runs the provider's forward ("fwd", with the student requiring grad, as in
    training) or forward and backward ("fwd_bwd", clearing the student's grad first). It does
    not synchronize a GPU.
    """
    point.checked()
    if point.provider == "reference_compiled":
        torch._dynamo.reset()
    student, teacher = inputs if inputs is not None else make_inputs(point)
    loss_fn = loss_function(point.provider)

    def call() -> None:
        if point.mode == "fwd":
            loss_fn(student, teacher)
            return
        student.grad = None
        loss_fn(student, teacher).backward()

    return call


# Dense float64 results per (inputs, rows), shared by the providers measured in one process (CUDA).
_DENSE64: dict[tuple, tuple[float, torch.Tensor]] = {}


def _loss_and_gradient(
    provider: str, student: torch.Tensor, teacher: torch.Tensor, rows: tuple[int, int]
) -> tuple[float, torch.Tensor]:
    """The provider's mean loss over ``rows`` and its student gradient (flat float64 on the CPU)."""
    student = student.detach().requires_grad_()
    loss = loss_function(provider, rows)(student, teacher)
    (gradient,) = torch.autograd.grad(loss, student)
    return loss.item(), gradient.to("cpu", torch.float64).flatten()


def accuracy(point: Point, inputs: tuple[torch.Tensor, torch.Tensor], rows: int) -> tuple[float, float]:
    """(loss_rel_error, grad_cosine) of our provider ``point.provider`` on ``inputs``.

    Both sides compute only reference rows 0 .. min(n, rows) − 1 (each against the whole batch),
    so this stays cheap at any n: the provider in the point's dtype, and the dense torch backend
    in float64 (inputs cast). loss_rel_error = |L − L_dense64| / |L_dense64| for the mean loss L of
    those rows; grad_cosine is the cosine similarity of the two student gradients.
    """
    student, teacher = inputs
    span = (0, min(point.n, rows))
    key = (point.n, point.p, point.q, point.dtype, point.device, span)
    if key not in _DENSE64:
        _DENSE64[key] = _loss_and_gradient("torch", student.double(), teacher.double(), span)
    exact_loss, exact_gradient = _DENSE64[key]
    loss, gradient = _loss_and_gradient(point.provider, student, teacher, span)
    error = abs(loss - exact_loss) / abs(exact_loss) if exact_loss != 0 else abs(loss)
    cosine = torch.nn.functional.cosine_similarity(gradient, exact_gradient, dim=0).item()
    return error, cosine


def _with_accuracy(point: Point, settings: Settings, inputs, measurement: Measurement) -> Measurement:
    """``measurement`` with the accuracy of an "ok" point of ours added (a failure goes to the note)."""
    if measurement.status != "ok" or point.provider not in OURS or settings.accuracy_rows < 1:
        return measurement
    try:
        error, cosine = accuracy(point, inputs, settings.accuracy_rows)
    except Exception as failure:  # noqa: BLE001 - the timing stands; the note says what failed
        note = f"accuracy not measured ({type(failure).__name__}: {_first_line(failure, 120)})"
        return replace(measurement, note=note)
    rows = min(point.n, settings.accuracy_rows)
    return replace(measurement, accuracy_rows=rows, loss_rel_error=error, grad_cosine=cosine)


def measure_point(point: Point, settings: Settings, ready: Callable[[], None] | None = None) -> Measurement:
    """Time and measure one point; out-of-memory and other failures become "oom"/"error" results.

    ``ready`` (optional) is called once the inputs exist, before the first loss call. An "ok"
    point of ours then gets its accuracy (``accuracy``), outside the timing and memory measurement.
    """
    # The harness guards memory itself (the runner predicts the eager reference's n³ footprint
    # and watches or catches the rest), so the reference's own size cap is lifted here.
    reference.set_memory_limit(_UNCAPPED_BYTES)
    try:
        inputs = make_inputs(point)
        call = build_call(point, inputs)
        if ready is not None:
            ready()
        measurement = _timed(point, settings, call)
    except Exception as error:  # noqa: BLE001 - every failure becomes a recorded cell
        if _is_out_of_memory(error):
            return Measurement("oom", f"OOM ({_first_line(error, 120)})")
        return Measurement("error", f"error ({type(error).__name__}: {_first_line(error, 160)})")
    return _with_accuracy(point, settings, inputs, measurement)


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
