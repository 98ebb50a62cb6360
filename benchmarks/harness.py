"""The shared harness of ``python -m benchmarks``: providers, inputs, one timing method per device, peak
memory, worker processes, predicted OOM / too-slow cells, result rows and their CSV files. Points other than
our providers on CUDA run in a fresh worker (``python -m benchmarks.harness SPEC RESULT READY``): threads,
malloc thresholds, OMP_WAIT_POLICY and torch.compile state change only there; seeds are own generators."""

from __future__ import annotations

import contextlib
import csv
import ctypes
import datetime
import gc
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy
import torch

import pc_kernels

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
GIB = 2**30
MODES = ("fwd", "fwd_bwd")
DEVICES = ("cpu", "cuda")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Our providers: (backend, algorithm) of pc_kernels.perception_coherence_loss.
OURS = {"torch": ("torch", "dense"), "torch_binned": ("torch", "binned")}
OURS |= {"triton": ("triton", "dense"), "triton_binned": ("triton", "binned")}
BINNED = {"torch_binned": "torch", "triton_binned": "triton"}  # each binned provider: its dense counterpart
ALTERNATIVES = ("reference", "reference_compiled")  # what a user would run instead
# Training steps (linear layer, our loss, backward), eager and torch.compile'd: (loss provider, compiled).
STEPS = {"torch_step": ("torch", False), "torch_compiled_step": ("torch", True)}
STEPS |= {"torch_binned_step": ("torch_binned", False), "torch_binned_compiled_step": ("torch_binned", True)}
COMPILED = ("reference_compiled", *(step for step, (_, compiled) in STEPS.items() if compiled))
PROVIDERS = (*OURS, *ALTERNATIVES, *STEPS)
# docs/spec.md's floor: the dense loss is bound by the special-function unit, about 16 operations per clock per
# SM; an H100 or H200 (132 SMs, ~1.8 GHz) does 16 * 132 * 1.8e9 ≈ 4e12 per second, one per sigmoid.
SIGMOID_FLOOR_PER_S = 16 * 132 * 1.8e9
ACCURACY_ROWS = 256
REFERENCE_LIMIT_ENV = "PC_KERNELS_REFERENCE_MEMORY_LIMIT"
# Glibc malloc in CPU workers: buffers of 64 KiB or more get their own mmap, unmapped when freed, so that
# resident memory tracks live tensors while memory is measured; the timed calls then get the thresholds a
# long-running process reaches by itself (mmap 32 MiB, trim 64 MiB), as the small one slows them.
_MMAP_THRESHOLD, _RELAXED_MMAP, _M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = 64 * 1024, 32 * 2**20, -1, -3
_RUN_FIELDS = ("run_id", "run_kind", "date", "commit", "device", "device_name", "torch_version", "triton_version")
POINT_FIELDS = ("provider", "mode", "n", "p", "q", "dtype")
_MEASURED = ("status", "note", "median_s", "p20_s", "p80_s", "samples", "first_call_s", "compile_s", "peak_bytes")
_DERIVED = ("sigmoid_evals", "evals_per_s", "floor_fraction", "accuracy_rows", "loss_rel_error", "grad_cosine")
FIELDS = (*_RUN_FIELDS, "threads", *POINT_FIELDS, *_MEASURED, *_DERIVED)  # one CSV row per point
_INTS = ("threads", "n", "p", "q", "samples", "peak_bytes", "sigmoid_evals", "accuracy_rows")
_FLOATS = tuple(field for field in FIELDS[FIELDS.index("median_s") :] if field not in _INTS)

Row = dict[str, Any]  # one CSV row: FIELDS to str, int, float or None


def check_choice(name: str, value: str, accepted: tuple[str, ...] | dict) -> str:
    """Return ``value`` if it is one of ``accepted``, else raise a ValueError naming ``name`` and them."""
    if value not in accepted:
        raise ValueError(f"{name} must be one of {', '.join(accepted)}; got {value!r}")
    return value


def sigmoid_evaluations(n: int, mode: str) -> int:
    """Sigmoid (and σ') evaluations of one dense call as docs/spec.md counts them: n(n−1)(n−2) per soft side
    (student and teacher) forward, and one side more for the student's backward."""
    return (2 if check_choice("mode", mode, MODES) == "fwd" else 3) * n * (n - 1) * (n - 2)


def predicted_reference_bytes(n: int) -> int:
    """The eager reference's n³ working memory (fwd+bwd, two soft sides, float32 compute for every input
    dtype benchmarked): about 6·n³·itemsize bytes, measured 2.82 GiB at n = 512."""
    return 6 * n**3 * 4


@dataclass(frozen=True)
class Point:
    """One point: student (n, p) requiring grad and teacher (n, q), seeded normal, of ``dtype``."""

    provider: str
    mode: str
    n: int
    p: int
    q: int
    dtype: str
    device: str


@dataclass(frozen=True)
class Limits:
    """Per point: a call over ``time_limit_s`` is too slow; timed calls repeat within ``repeat_budget_s``,
    ``min_repeats`` to ``max_repeats`` times (0: a one-call probe); one call may use ``memory_limit_bytes``;
    CPU workers run ``threads`` threads, with an empty inductor cache if ``fresh_compile_cache`` (a cold
    compile); our providers' accuracy on the first ``accuracy_rows`` reference rows (0: not measured)."""

    time_limit_s: float
    repeat_budget_s: float
    min_repeats: int
    max_repeats: int
    memory_limit_bytes: int
    threads: int
    fresh_compile_cache: bool = True
    accuracy_rows: int = ACCURACY_ROWS


@dataclass(frozen=True)
class Measurement:
    """What one point gave. ``status``: "ok", "oom", "skipped" or "error"; ``note`` says why. Seconds:
    median and p20/p80 of ``samples`` timed calls and the first (warm-up, compiling) call; ``peak_bytes``:
    one call's peak above its inputs; our providers' accuracy against the dense torch backend in float64
    on the first ``accuracy_rows`` reference rows: ``loss_rel_error``, ``grad_cosine``."""

    status: str
    note: str = ""
    median_s: float | None = None
    p20_s: float | None = None
    p80_s: float | None = None
    samples: int | None = None
    first_call_s: float | None = None
    peak_bytes: int | None = None
    accuracy_rows: int | None = None
    loss_rel_error: float | None = None
    grad_cosine: float | None = None


def unavailable_reason(provider: str, device: str) -> str | None:
    """Why ``provider`` cannot be benchmarked on ``device`` ("cpu" or "cuda"), or None if it can."""
    if OURS.get(check_choice("provider", provider, PROVIDERS), ("",))[0] == "triton":
        if device != "cuda":
            return "triton runs on CUDA only; the CPU interpreter is never benchmarked"
        if "triton" not in pc_kernels.available_backends("cuda"):
            return "backend 'triton' is not usable in this installation"
    if provider in COMPILED and device == "cpu" and not (shutil.which("g++") or shutil.which("c++")):
        return "torch.compile on CPU needs a C++ compiler (g++), none found"
    return None


def make_inputs(point: Point) -> tuple[torch.Tensor, torch.Tensor]:
    """The point's student (requiring grad) and teacher, drawn from a generator seeded with n."""
    generator = torch.Generator().manual_seed(point.n)
    student, teacher = (torch.randn(point.n, d, generator=generator) for d in (point.p, point.q))
    dtype, device = DTYPES[check_choice("dtype", point.dtype, DTYPES)], check_choice("device", point.device, DEVICES)
    return student.to(device, dtype).requires_grad_(), teacher.to(device, dtype)


def loss_function(provider: str) -> Callable[..., torch.Tensor]:
    """(student, teacher) → mean loss of ``provider`` (not a compiled step) with default options;
    "reference_compiled" is a fresh compile."""
    backend, algorithm = OURS.get(check_choice("provider", provider, (*OURS, *ALTERNATIVES)), ("reference", "dense"))

    def loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return pc_kernels.perception_coherence_loss(student, teacher, backend=backend, algorithm=algorithm)

    return torch.compile(loss, dynamic=False) if provider == "reference_compiled" else loss


def build_call(point: Point, inputs: tuple[torch.Tensor, torch.Tensor]) -> Callable[[], None]:
    """One call of the point: the forward as in training ("fwd"), or forward and backward. A training step
    (STEPS), eager or torch.compile'd, is a linear layer (p → p), our loss with backend="torch"
    (dense, or binned), and the backward to the layer's weight and bias."""
    student, teacher = inputs
    leaves, step, args, backward = [student], None, inputs, check_choice("mode", point.mode, MODES) == "fwd_bwd"
    if point.provider in STEPS:
        weight = torch.randn(point.p, point.p, generator=torch.Generator().manual_seed(point.p)) / point.p**0.5
        weight = weight.to(student.device, student.dtype).requires_grad_()
        bias = torch.zeros(point.p, device=student.device, dtype=student.dtype, requires_grad=True)
        leaves, args = [weight, bias], (student.detach(), teacher)
        provider, compiled = STEPS[point.provider]
        loss = loss_function(provider)

        def forward(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return loss(torch.nn.functional.linear(x, weight, bias), t)

        step = torch.compile(forward) if compiled else forward
    step = step or loss_function(point.provider)

    def call() -> None:
        for leaf in leaves:
            leaf.grad = None
        loss = step(*args)
        if backward:
            loss.backward()

    return call


def wall_seconds(call: Callable[[], None], device: str) -> float:
    """Wall-clock seconds of one call, the GPU synchronized before and after."""
    synchronize = torch.cuda.synchronize if device == "cuda" else lambda: None
    synchronize()
    begin = time.perf_counter()
    call()
    synchronize()
    return time.perf_counter() - begin


def rss_bytes(pid: int | str = "self", field: str = "VmRSS") -> int:
    """A field of /proc/<pid>/status in bytes: "VmRSS" (resident now) or "VmHWM" (its peak)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field + ":"))


def peak_bytes(call: Callable[[], None], device: str) -> tuple[int, float]:
    """Run ``call`` once; return its peak memory above what was in use before, and its seconds. Memory: on
    CUDA from the allocator's statistics, on CPU from the resident high-water mark reset just before the
    call (sound in a worker started by ``measure_in_worker``, whose malloc returns freed buffers)."""
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        seconds = wall_seconds(call, device)
        return torch.cuda.max_memory_allocated() - before, seconds
    before = rss_bytes()
    Path("/proc/self/clear_refs").write_text("5", encoding="ascii")  # VmHWM := VmRSS (Linux >= 4.0)
    seconds = wall_seconds(call, device)
    return max(rss_bytes(field="VmHWM") - before, 0), seconds


def timed(call: Callable[[], None], device: str, limits: Limits, after_memory: Callable | None = None) -> Measurement:
    """Warm-up call (``first_call_s``), one call for peak memory, then the timed calls: medians of
    ``triton.testing.do_bench`` on CUDA, of repeated ``time.perf_counter`` calls on CPU. With
    ``limits.max_repeats == 0``, a probe: one call only, timed and measured at once."""
    if limits.max_repeats == 0:
        peak, one = peak_bytes(call, device)
        first = one
    else:
        first, (peak, _) = wall_seconds(call, device), peak_bytes(call, device)
        if after_memory is not None:
            after_memory()
        one = wall_seconds(call, device)
    if one > limits.time_limit_s:
        note = f"skipped (too slow: one call took {one:.3g} s > limit {limits.time_limit_s:g} s)"
        return Measurement("skipped", note, first_call_s=first)
    repeats = min(max(int(limits.repeat_budget_s / max(one, 1e-9)), limits.min_repeats), limits.max_repeats)
    if device == "cuda" and repeats > 0:
        import triton.testing

        quantiles = triton.testing.do_bench(call, rep=1e3 * one * repeats, quantiles=[0.5, 0.2, 0.8])
        median, p20, p80 = (ms / 1e3 for ms in quantiles)
    else:
        samples = [one] + [wall_seconds(call, device) for _ in range(repeats - 1)]
        p20, median, p80 = (float(v) for v in numpy.percentile(samples, [20, 50, 80]))
    return Measurement("ok", "", median, p20, p80, max(repeats, 1), first, peak)


def loss_and_gradient(student: torch.Tensor, teacher: torch.Tensor, **options: Any) -> tuple[float, torch.Tensor]:
    """The mean loss of ``pc_kernels.perception_coherence_loss(student, teacher, **options)`` and its gradient
    with respect to the student, flattened, in float64."""
    student = student.detach().requires_grad_()
    loss = pc_kernels.perception_coherence_loss(student, teacher, **options)
    return loss.item(), torch.autograd.grad(loss, student)[0].double().flatten()


def accuracy(point: Point, inputs: tuple[torch.Tensor, torch.Tensor], rows: int) -> tuple[float, float]:
    """(relative loss error, gradient cosine) of our provider against the dense torch backend on float64
    inputs, both computing only reference rows 0 .. min(n, rows) − 1 (each against the whole batch)."""
    span = (0, min(point.n, rows))
    exact, exact_gradient = loss_and_gradient(*(x.double() for x in inputs), backend="torch", rows=span)
    backend, algorithm = OURS[point.provider]
    loss, gradient = loss_and_gradient(*inputs, backend=backend, algorithm=algorithm, rows=span)
    error = abs(loss - exact) / abs(exact) if exact != 0 else abs(loss)
    return error, torch.nn.functional.cosine_similarity(gradient, exact_gradient, dim=0).item()


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:160]}"


def measure_point(point: Point, limits: Limits, after_memory: Callable | None = None) -> Measurement:
    """Time one point here and measure its memory, then (an "ok" point of ours) its accuracy; running out
    of memory and other failures become "oom" / "error" cells."""
    try:
        inputs = make_inputs(point)
        call = build_call(point, inputs)
        measurement = timed(call, point.device, limits, after_memory)
    except Exception as error:  # noqa: BLE001 - every failure becomes a recorded cell
        text = str(error).lower()  # torch.compile wraps errors, so the message is checked too
        if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text or "can't allocate" in text:
            return Measurement("oom", f"OOM ({_first_line(error)})")
        return Measurement("error", f"error ({_first_line(error)})")
    if measurement.status != "ok" or point.provider not in OURS or limits.accuracy_rows < 1:
        return measurement
    try:
        loss_error, cosine = accuracy(point, inputs, limits.accuracy_rows)
    except Exception as failure:  # noqa: BLE001 - the timing stands; the note says what failed
        return replace(measurement, note=f"accuracy not measured ({_first_line(failure)})")
    rows = min(point.n, limits.accuracy_rows)
    return replace(measurement, accuracy_rows=rows, loss_rel_error=loss_error, grad_cosine=cosine)


def measure_in_worker(point: Point, limits: Limits) -> Measurement:
    """Measure ``point`` in a fresh process. On CPU it is stopped once its resident peak above what it held
    after importing passes the memory limit ("OOM ... stopped"); on any device once it runs far past its time."""
    deadline = time.monotonic() + 600.0 + limits.repeat_budget_s  # 10 minutes for a cold compile
    deadline += (limits.min_repeats + 3) * limits.time_limit_s
    with tempfile.TemporaryDirectory(prefix="pc_bench_") as scratch:
        result, ready, log = (Path(scratch, name) for name in ("result.json", "ready", "stderr.txt"))
        spec = json.dumps({"point": asdict(point), "limits": asdict(limits)})
        # Fixed threads, passive OpenMP waiting (busy-waiting threads slow every provider by 10× or more on
        # shared cores), the small malloc mmap threshold, no reference size cap (the harness guards memory).
        env = {**os.environ, "OMP_NUM_THREADS": str(limits.threads), "OMP_WAIT_POLICY": "PASSIVE"}
        env |= {"MALLOC_MMAP_THRESHOLD_": str(_MMAP_THRESHOLD), REFERENCE_LIMIT_ENV: str(2**62)}
        if limits.fresh_compile_cache:
            env["TORCHINDUCTOR_CACHE_DIR"] = str(Path(scratch, "inductor"))
        with log.open("w", encoding="utf-8") as stderr:
            command = [sys.executable, "-m", "benchmarks.harness", spec, str(result), str(ready)]
            worker = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
            stopped = None
            while worker.poll() is None and stopped is None:
                with contextlib.suppress(OSError, ValueError, StopIteration):  # not ready yet, or just ended
                    used = rss_bytes(worker.pid, "VmHWM") - int(ready.read_text(encoding="ascii"))
                    if point.device == "cpu" and used > limits.memory_limit_bytes:
                        limit = f"{limits.memory_limit_bytes / GIB:.3g} GiB"
                        stopped = Measurement("oom", f"OOM (used over {limit} above its inputs; stopped)")
                if time.monotonic() > deadline:
                    stopped = Measurement("error", "error (worker did not finish in time; stopped)")
                time.sleep(0.02)
            if stopped is not None:
                worker.kill()
                worker.wait()
                return stopped
        if result.exists():
            return Measurement(**json.loads(result.read_text(encoding="utf-8")))
        if worker.returncode == -9:
            return Measurement("oom", "OOM (worker killed by the system)")
        last = (log.read_text(encoding="utf-8", errors="replace").strip().splitlines() or [""])[-1]
        return Measurement("error", f"error (worker exited with {worker.returncode}: {last[:160]})")


def measure(point: Point, limits: Limits) -> Measurement:
    """Measure a point where it belongs: our providers on CUDA here (memory from the allocator; the CUDA
    cache emptied afterwards), every other point in a fresh worker (``measure_in_worker``)."""
    if point.device == "cpu" or point.provider not in OURS:
        return measure_in_worker(point, limits)
    measurement = measure_point(point, limits)
    gc.collect()
    torch.cuda.empty_cache()
    return measurement


def run_series(
    points: list[Point],
    limits: Limits,
    environment: Row,
    on_row: Callable[[Row], None],
    measure_fn: Callable[[Point, Limits], Measurement] = measure,
    last_ok: tuple[int, float] | None = None,
) -> list[Row]:
    """Measure one series' points in increasing n. Cells known without running are not run: unavailable
    providers; the eager reference's OOM predicted from its n³ footprint; too slow, extrapolated from the
    last measured (n, seconds) (or ``last_ok``) as n³ (n² when binned); every larger n once one ran out of
    memory or was too slow. ``on_row`` sees each row as soon as it exists."""
    rows, stopped, limit = [], None, limits.memory_limit_bytes
    for point in sorted(points, key=lambda p: p.n):
        reason, need = unavailable_reason(point.provider, point.device), predicted_reference_bytes(point.n)
        seconds = last_ok and last_ok[1] * (point.n / last_ok[0]) ** (2 if point.provider in BINNED else 3)
        measurement = stopped
        if reason is not None:
            measurement = Measurement("skipped", f"skipped ({reason})")
        elif point.provider == "reference" and need > limit:
            measurement = Measurement("oom", f"OOM (predicted {need / GIB:.3g} GiB > limit {limit / GIB:.3g} GiB)")
        elif stopped is None and seconds and seconds > limits.time_limit_s:
            extrapolated = f"extrapolated {seconds:.3g} s per call > limit {limits.time_limit_s:g} s"
            measurement = Measurement("skipped", f"skipped (too slow: {extrapolated})")
        if measurement is None:
            measurement = measure_fn(point, limits)
            if measurement.status == "ok":
                last_ok = (point.n, measurement.median_s)
            elif measurement.status in ("oom", "skipped"):
                why = "OOM (already" if measurement.status == "oom" else "skipped (too slow already"
                stopped = Measurement(measurement.status, f"{why} at n={point.n})")
        rows.append(to_row(environment, point, measurement))
        on_row(rows[-1])
    return rows


def to_row(environment: Row, point: Point, measurement: Measurement) -> Row:
    """One CSV row: the run's environment, the point, the measurement, and derived numbers: compile time
    (first call minus median) and, for the dense algorithm, sigmoid evaluations per second and on CUDA
    their fraction of docs/spec.md's floor."""
    row: Row = dict.fromkeys(FIELDS) | environment | asdict(point) | asdict(measurement)
    evaluations = None if point.provider in BINNED else sigmoid_evaluations(point.n, point.mode)
    row["sigmoid_evals"] = evaluations
    if measurement.status == "ok":
        row["compile_s"] = max(measurement.first_call_s - measurement.median_s, 0.0)
        if evaluations is not None:
            row["evals_per_s"] = evaluations / measurement.median_s
            if point.device == "cuda":
                row["floor_fraction"] = row["evals_per_s"] / SIGMOID_FLOOR_PER_S
    return row


def append_rows(path: Path, rows: list[Row]) -> None:
    """Append rows to the CSV file ``path``, writing the header first when the file is new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    if not new:
        load_rows(path)  # refuses a file with other columns
    with path.open("a", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows({key: "" if row.get(key) is None else row[key] for key in FIELDS} for row in rows)


def load_rows(path: Path) -> list[Row]:
    """The rows of a results CSV file, numbers parsed and empty cells None; a ValueError for other columns."""
    with path.open(newline="", encoding="utf-8") as source:
        reader = csv.DictReader(source)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path} does not have the columns {','.join(FIELDS)}; regenerate it")
        rows: list[Row] = list(reader)
    for row in rows:
        row.update({key: int(row[key]) if row[key] else None for key in _INTS})
        row.update({key: float(row[key]) if row[key] else None for key in _FLOATS})
    return rows


def latest_per_point(rows: list[Row], run_kind: str = "full") -> list[Row]:
    """For every (provider, mode, n, p, q, dtype), its row from the latest run of ``run_kind``."""
    latest: dict[tuple, Row] = {}
    for row in sorted((r for r in rows if r["run_kind"] == run_kind), key=lambda r: str(r["run_id"])):
        latest[tuple(row[field] for field in POINT_FIELDS)] = row
    return list(latest.values())


def device_name(device: str) -> str:
    """The GPU's name (CUDA) or the CPU model (from /proc/cpuinfo)."""
    if check_choice("device", device, DEVICES) == "cuda":
        return torch.cuda.get_device_name()
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown CPU")


def device_slug(device: str, name: str) -> str:
    """The results folder name of a device, e.g. "cpu-intel-r-xeon-r-processor" or "cuda-nvidia-h200"."""
    return device + "-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def source_commit(root: Path = REPO) -> str:
    """HEAD's 12-digit commit, with "-dirty" when the measured code (pc_kernels/, benchmarks/ but its
    results, setup.py) has uncommitted or untracked changes; "unknown" without git."""
    try:
        head, dirty = (
            subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
            for args in (
                ("rev-parse", "--short=12", "HEAD"),
                ("status", "--porcelain", "--", "pc_kernels", "benchmarks", "setup.py", ":!benchmarks/results"),
            )
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def require_clean(commit: str, out: Path, allow_dirty: bool) -> None:
    """Refuse (SystemExit) to store results of code that is not a clean commit into the repository's
    results folder (``out`` inside RESULTS), unless ``allow_dirty``: they are then stored marked."""
    inside = out.resolve().is_relative_to(RESULTS.resolve())
    if inside and not allow_dirty and (commit.endswith("-dirty") or commit == "unknown"):
        raise SystemExit(
            f"refusing to store results in {out}: the measured code is not a clean commit ({commit}); commit "
            "it, or pass --allow-dirty to store them marked as such"
        )


def run_environment(device: str, threads: int, run_kind: str, commit: str) -> Row:
    """The fields every row of one run shares: run id, date (UTC), commit, device, versions, threads."""
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        triton_version = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton_version = "not installed"
    run = (now.strftime("%Y%m%dT%H%M%S%fZ"), run_kind, now.strftime("%Y-%m-%d %H:%M UTC"), commit, device)
    values = (*run, device_name(device), torch.__version__, triton_version)
    return dict(zip(_RUN_FIELDS, values, strict=True)) | {"threads": threads}


def _worker_main(spec: str, result: str, ready: str) -> None:
    fields = json.loads(spec)
    point, limits = Point(**fields["point"]), Limits(**fields["limits"])
    torch.set_num_threads(limits.threads)
    Path(ready + ".partial").write_text(str(rss_bytes()), encoding="ascii")  # the memory guard's baseline
    os.replace(ready + ".partial", ready)

    def relax_malloc() -> None:
        if point.device == "cpu":
            with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to relax
                ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _RELAXED_MMAP)
                ctypes.CDLL(None).mallopt(_M_TRIM_THRESHOLD, 2 * _RELAXED_MMAP)

    measurement = measure_point(point, limits, relax_malloc)
    Path(result).write_text(json.dumps(asdict(measurement)), encoding="utf-8")


if __name__ == "__main__":
    _worker_main(*sys.argv[1:4])
