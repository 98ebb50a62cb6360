"""Run-time settings the harnesses share: the device a run asks for, the cache folder, and deterministic
kernels and a thread count for the duration of a run, restored after it (a harness changes no process-wide
setting for good)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pc_kernels``, else ``~/.cache/pc_kernels``: where the harnesses cache teachers."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pc_kernels"


@contextlib.contextmanager
def run_settings(threads: int | None) -> Iterator[None]:
    """Deterministic torch kernels (a warning where none exists) and ``threads`` CPU threads
    (unchanged if ``None``) for the duration of a run; the previous settings are restored after."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.set_num_threads(previous_threads)


def check_device(device: str) -> torch.device:
    """The torch device named by ``device`` ("cpu", "cuda", "cuda:<index>"), checked to be usable here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>'; got {device!r}") from error
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>'; got {device!r}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but CUDA is not available here; use device 'cpu'")
        index = 0 if parsed.index is None else parsed.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        parsed = torch.device("cuda", index)
    return parsed
