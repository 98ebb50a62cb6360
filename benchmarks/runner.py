"""Sweep benchmark points and turn each into a result row, recording OOM and too-slow points.

Points of one series (provider, mode, dims, dtype) run in increasing n. Before each point the
runner predicts what it can: a provider unavailable on the device is "skipped (reason)"; the eager
reference is "OOM (predicted ...)" when its known n³ footprint exceeds the memory limit; a point
whose time, extrapolated from the series' last measured point as n³ (n² for the binned providers),
exceeds the time limit is "skipped (too slow: extrapolated ...)"; after a run point ran out of
memory or was too slow, larger n are not run.

CPU points run in a fresh worker process each (``python -m benchmarks.point``), watched for
memory above the limit and for hangs; CUDA points run in this process (allocator statistics give
their peak memory, and CUDA out-of-memory errors are caught).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from .memory import rss_bytes
from .point import Measurement, Point, Settings, measure_point
from .providers import BINNED_DENSE, predicted_reference_bytes, time_exponent, unavailable_reason
from .records import FIELDS, Row
from .throughput import H100_SIGMOID_FLOOR_PER_S, sigmoid_evaluations

_REPO_ROOT = Path(__file__).resolve().parent.parent
# Every allocation of at least this many bytes gets its own mmap, returned to the system when
# freed; a fixed threshold also stops glibc from raising it dynamically. Resident memory then
# tracks live tensors, which the CPU peak-memory method needs.
_MALLOC_MMAP_THRESHOLD = 64 * 1024
# A worker may spend this long compiling (torch.compile from a cold cache) before it counts as hung.
_COMPILE_ALLOWANCE_S = 600.0
_WATCH_INTERVAL_S = 0.02
GIB = 2**30


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep and the limits every point runs under.

    dims: (p, q) pairs of student and teacher feature sizes.
    memory_limit_bytes: the most memory one call may use above its inputs: the eager reference's
        predicted footprint is held against it, and CPU workers that exceed it are stopped.
    fresh_compile_cache: give each CPU worker an empty inductor cache, so that the reported
        compile time is a cold compile.
    """

    device: str
    sizes: tuple[int, ...]
    dims: tuple[tuple[int, int], ...]
    dtypes: tuple[str, ...]
    providers: tuple[str, ...]
    modes: tuple[str, ...]
    threads: int
    memory_limit_bytes: int
    settings: Settings
    fresh_compile_cache: bool


@dataclass
class Series:
    """What earlier points of one series tell about the next one."""

    last_ok: tuple[int, float] | None = None
    stopped: Measurement | None = None


def _gib(size: float) -> str:
    return f"{size / GIB:.3g} GiB"


def predicted_measurement(point: Point, config: SweepConfig, series: Series) -> Measurement | None:
    """The point's result if it can be told without running it (unavailable, OOM, too slow), else None."""
    reason = unavailable_reason(point.provider, point.device)
    if reason is not None:
        return Measurement("skipped", f"skipped ({reason})")
    if series.stopped is not None:
        return series.stopped
    need = predicted_reference_bytes(point.provider, point.n, point.p, point.q)
    if need is not None and need > config.memory_limit_bytes:
        return Measurement("oom", f"OOM (predicted {_gib(need)} > limit {_gib(config.memory_limit_bytes)})")
    if series.last_ok is not None:
        last_n, last_s = series.last_ok
        seconds = last_s * (point.n / last_n) ** time_exponent(point.provider)
        if seconds > config.settings.time_limit_s:
            return Measurement(
                "skipped",
                f"skipped (too slow: extrapolated {seconds:.3g} s per call"
                f" > limit {config.settings.time_limit_s:g} s)",
            )
    return None


def record_outcome(measurement: Measurement, point: Point, series: Series) -> None:
    """Update what the series knows after ``point`` was run and gave ``measurement``."""
    if measurement.status == "ok":
        series.last_ok = (point.n, measurement.median_s)
    elif measurement.status == "oom" and series.stopped is None:
        series.stopped = Measurement("oom", f"OOM (already at n={point.n})")
    elif measurement.status == "skipped" and series.stopped is None:
        series.stopped = Measurement("skipped", f"skipped (too slow already at n={point.n})")


def worker_environment(scratch: Path, fresh_compile_cache: bool) -> dict[str, str]:
    """Environment of a CPU worker process: fixed malloc mmap threshold (for the memory
    measurement; relaxed again before the timed calls, see ``benchmarks.memory``), passive OpenMP
    waiting (busy-waiting threads slow every provider alike by 10x or more when another process
    shares the cores), optional empty inductor cache."""
    env = dict(os.environ)
    env["MALLOC_MMAP_THRESHOLD_"] = str(_MALLOC_MMAP_THRESHOLD)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if fresh_compile_cache:
        env["TORCHINDUCTOR_CACHE_DIR"] = str(scratch / "inductor")
    return env


def _read_baseline(ready: Path) -> int | None:
    return int(ready.read_text(encoding="ascii")) if ready.exists() else None


def _watch(process: subprocess.Popen, ready: Path, config: SweepConfig) -> Measurement | None:
    """Wait for a worker; kill it and say why if it exceeds the memory limit or hangs."""
    settings = config.settings
    deadline = time.monotonic() + _COMPILE_ALLOWANCE_S + settings.repeat_budget_s
    deadline += (settings.min_repeats + 3) * settings.time_limit_s
    baseline = None
    while process.poll() is None:
        baseline = baseline if baseline is not None else _read_baseline(ready)
        try:
            # The high-water mark also catches peaks that come and go between two polls.
            used = rss_bytes(process.pid, "VmHWM") - baseline if baseline is not None else 0
        except (OSError, ValueError):
            used = 0
        if used > config.memory_limit_bytes:
            process.kill()
            process.wait()
            return Measurement(
                "oom", f"OOM (used over {_gib(config.memory_limit_bytes)} above its inputs; stopped)"
            )
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            return Measurement("error", "error (worker did not finish in time; stopped)")
        time.sleep(_WATCH_INTERVAL_S)
    return None


def measure_in_worker(point: Point, config: SweepConfig) -> Measurement:
    """Measure a CPU point in a fresh worker process, stopping it above the memory limit or if it hangs."""
    with tempfile.TemporaryDirectory(prefix="pc_bench_") as scratch_dir:
        scratch = Path(scratch_dir)
        result, ready, stderr_path = scratch / "result.json", scratch / "ready", scratch / "stderr.txt"
        spec = json.dumps({**asdict(point), "threads": config.threads, "settings": asdict(config.settings)})
        with stderr_path.open("w", encoding="utf-8") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.point", spec, str(result), str(ready)],
                cwd=_REPO_ROOT,
                env=worker_environment(scratch, config.fresh_compile_cache),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            stopped = _watch(process, ready, config)
        if stopped is not None:
            return stopped
        if result.exists():
            return Measurement(**json.loads(result.read_text(encoding="utf-8")))
        if process.returncode == -9:
            return Measurement("oom", "OOM (worker killed by the system)")
        lines = stderr_path.read_text(encoding="utf-8", errors="replace").strip().splitlines() or [""]
        return Measurement("error", f"error (worker exited with {process.returncode}: {lines[-1][:160]})")


def _measure_here(point: Point, config: SweepConfig) -> Measurement:
    measurement = measure_point(point, config.settings)
    gc.collect()
    torch.cuda.empty_cache()
    return measurement


def to_row(environment: Row, point: Point, measurement: Measurement) -> Row:
    """One result row: the run's environment, the point, the measurement and derived rates.

    Sigmoid evaluations (and their rate) are those of the dense algorithm; binned providers do not
    evaluate them one by one, so their rows leave these cells empty.
    """
    row: Row = dict.fromkeys(FIELDS)
    row.update({**environment, **asdict(point), **asdict(measurement)})
    if point.provider in BINNED_DENSE:
        evals = None
    else:
        evals = row["sigmoid_evals"] = sigmoid_evaluations(point.n, point.mode)
    if measurement.status == "ok":
        row["compile_s"] = max(measurement.first_call_s - measurement.median_s, 0.0)
        if evals is not None:
            row["evals_per_s"] = evals / measurement.median_s
            if point.device == "cuda":
                row["floor_fraction"] = row["evals_per_s"] / H100_SIGMOID_FLOOR_PER_S
    return row


def points_of(config: SweepConfig) -> list[list[Point]]:
    """The sweep's points grouped by series (provider, mode, dims, dtype), each in increasing n."""
    return [
        [Point(provider, mode, n, p, q, dtype, config.device) for n in sorted(config.sizes)]
        for p, q in config.dims
        for dtype in config.dtypes
        for mode in config.modes
        for provider in config.providers
    ]


def run_sweep(config: SweepConfig, environment: Row, on_row: Callable[[Row], None]) -> list[Row]:
    """Measure every point of ``config``; ``on_row`` sees each row as soon as it exists."""
    measure = _measure_here if config.device == "cuda" else measure_in_worker
    rows = []
    for points in points_of(config):
        series = Series()
        for point in points:
            measurement = predicted_measurement(point, config, series)
            if measurement is None:
                measurement = measure(point, config)
                record_outcome(measurement, point, series)
            row = to_row(environment, point, measurement)
            on_row(row)
            rows.append(row)
    return rows
