"""Result rows: what each one holds, the run's environment, and CSV storage under results/<device-tag>/.

Every row is one (provider, mode, n, p, q, dtype) point of one run. Rows are appended to
``<out>/<device-tag>/results.csv`` as soon as they are measured; a run is identified by ``run_id``
and is either "quick" or "full".

Accuracy (our providers' rows with status "ok"): ``loss_rel_error`` and ``grad_cosine`` compare the
provider, on the point's own inputs, with the dense torch backend in float64 on the first
``accuracy_rows`` reference rows (``benchmarks.point.accuracy``). Files written before these
columns existed still load (the cells are None) and are upgraded in place on the next append.
"""

from __future__ import annotations

import csv
import datetime
import platform
import re
import subprocess
from pathlib import Path

import torch

FIELDS = (
    "run_id",
    "run_kind",
    "date",
    "commit",
    "device",
    "device_name",
    "torch_version",
    "triton_version",
    "threads",
    "provider",
    "mode",
    "n",
    "p",
    "q",
    "dtype",
    "status",
    "note",
    "median_s",
    "p20_s",
    "p80_s",
    "samples",
    "first_call_s",
    "compile_s",
    "peak_bytes",
    "sigmoid_evals",
    "evals_per_s",
    "floor_fraction",
    "accuracy_rows",
    "loss_rel_error",
    "grad_cosine",
)
# Columns added after results were first stored: a file without them still loads.
ADDED_FIELDS = ("accuracy_rows", "loss_rel_error", "grad_cosine")
INT_FIELDS = ("threads", "n", "p", "q", "samples", "peak_bytes", "sigmoid_evals", "accuracy_rows")
FLOAT_FIELDS = (
    "median_s",
    "p20_s",
    "p80_s",
    "first_call_s",
    "compile_s",
    "evals_per_s",
    "floor_fraction",
    "loss_rel_error",
    "grad_cosine",
)
STATUSES = ("ok", "oom", "skipped", "error")
POINT_FIELDS = ("provider", "mode", "n", "p", "q", "dtype")
RESULTS_FILE = "results.csv"

Row = dict[str, object]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """A human-readable name of ``device`` ("cpu" or "cuda"): the CPU model or the GPU name."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    return _cpu_name()


def device_tag(device: str, name: str) -> str:
    """The results folder of a device: e.g. "cpu-intel-r-xeon-r-processor" or "cuda-nvidia-h100-80gb-hbm3"."""
    return device + "-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "not installed"
    return triton.__version__


def run_environment(device: str, threads: int, run_kind: str) -> Row:
    """The fields every row of one run shares: run id, date (UTC), commit, device and versions."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = device_name(device)
    return {
        "run_id": now.strftime("%Y%m%dT%H%M%SZ"),
        "run_kind": run_kind,
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "device": device,
        "device_name": name,
        "torch_version": torch.__version__,
        "triton_version": _triton_version(),
        "threads": threads,
    }


def _header(path: Path) -> tuple[str, ...]:
    with path.open(newline="", encoding="utf-8") as source:
        return tuple(next(csv.reader(source), ()))


def _checked_header(path: Path, header: tuple[str, ...]) -> tuple[str, ...]:
    """``header`` if it is FIELDS, or FIELDS without some of ADDED_FIELDS (an older file), else raise."""
    if [f for f in FIELDS if f in header] != list(header) or set(FIELDS) - set(header) - set(ADDED_FIELDS):
        raise ValueError(f"{path} does not have the results columns {', '.join(FIELDS)}")
    return header


def append_rows(path: Path, rows: list[Row]) -> None:
    """Append ``rows`` to the CSV file ``path`` (created with a header when new).

    A file with an older header (without some of ADDED_FIELDS) is first rewritten with the current
    header, its rows kept and their new cells empty.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    if not new and _checked_header(path, _header(path)) != FIELDS:
        with path.open(newline="", encoding="utf-8") as source:
            old = list(csv.DictReader(source))
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=FIELDS, restval="")
            writer.writeheader()
            writer.writerows(old)
    with path.open("a", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row[key] for key in FIELDS})


def _parsed(raw: dict[str, str]) -> Row:
    row: Row = {key: raw.get(key, "") for key in FIELDS}
    for key in INT_FIELDS:
        row[key] = int(raw[key]) if raw.get(key) else None
    for key in FLOAT_FIELDS:
        row[key] = float(raw[key]) if raw.get(key) else None
    return row


def load_rows(path: Path) -> list[Row]:
    """All rows of a results CSV file, with numbers parsed and empty or absent cells as None.

    Files without some of ADDED_FIELDS (written before those columns existed) load too.
    """
    with path.open(newline="", encoding="utf-8") as source:
        reader = csv.DictReader(source)
        _checked_header(path, tuple(reader.fieldnames or ()))
        return [_parsed(raw) for raw in reader]


def latest_per_point(rows: list[Row], run_kind: str) -> list[Row]:
    """For every (provider, mode, n, p, q, dtype), its row from the most recent run of ``run_kind``.

    Points measured by separate invocations (one run for our providers, one for the baselines,
    say) are combined this way; each row keeps its own run's date and commit.
    """
    latest: dict[tuple, Row] = {}
    for row in rows:
        if row["run_kind"] != run_kind:
            continue
        key = tuple(row[field] for field in POINT_FIELDS)
        if key not in latest or str(row["run_id"]) > str(latest[key]["run_id"]):
            latest[key] = row
    return list(latest.values())
