"""Where a result comes from: the machine, the commit, the versions, the date and the load; and the report
files that carry it.

Every report a harness writes carries this record beside the command that produced it, so that a
number in the docs names its run.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pc_kernels

# The packages whose versions a report records, when installed.
RECORDED_PACKAGES = ("numba", "scipy", "scikit-learn", "sentence-transformers", "transformers")


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` reports it, else /proc/cpuinfo's, else ``platform.processor()``."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        cpuinfo = Path("/proc/cpuinfo")
        lines = cpuinfo.read_text(encoding="utf-8", errors="replace") if cpuinfo.is_file() else ""
    for line in lines.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("model name", "model") and value.strip() and not value.strip().isdigit():
            return value.strip()
    return platform.processor() or platform.machine()


def git_commit(folder: Path) -> str:
    """The commit checked out at ``folder`` (short hash, "+dirty" with uncommitted tracked changes),
    or "unknown" outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}+dirty" if changes else commit


def _versions() -> dict[str, str]:
    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pc_kernels": pc_kernels.__version__,
    }
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def environment(device: torch.device) -> dict[str, object]:
    """The record of this run's environment: hardware, commit, versions, date, torch threads, and the
    1-minute load average at the start (above the core count, other work shared the machine)."""
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {
        "device": str(device),
        "hardware": hardware,
        "cpu_cores": os.cpu_count(),
        "commit": git_commit(Path(__file__).resolve().parent),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "versions": _versions(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def describe(env: dict[str, object]) -> str:
    """One Markdown sentence naming the machine, commit, date, load and versions of ``env``."""
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())  # type: ignore[attr-defined]
    return (
        f"Run on {env['hardware']} ({env['cpu_cores']} cores, device `{env['device']}`, torch threads: "
        f"{env['torch_threads']}, 1-minute load average {env['load_average_1min']} at the start), commit "
        f"`{env['commit']}`, {env['date_utc']} UTC; {versions}."
    )


def run_header(
    command: str, seconds: float, config: Any, env: dict[str, object], data: dict[str, Any]
) -> dict[str, object]:
    """The first keys of every report.json: the command, its wall time in seconds, the settings (a
    dataclass), the environment and the data."""
    return {"command": command, "seconds": seconds, "config": asdict(config), "environment": env, "data": data}


def write_report_files(folder: Path, payload: dict[str, object], markdown: str) -> list[Path]:
    """Write ``payload`` as ``report.json`` (first, so that a result survives a failing Markdown step) and
    ``markdown`` as ``report.md`` into ``folder``, created if missing; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    markdown_path = folder / "report.md"
    markdown_path.write_text(markdown, encoding="utf-8")
    return [json_path, markdown_path]
