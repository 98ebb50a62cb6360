"""Peak memory of one call above what was allocated before it.

CUDA: the caching allocator's peak statistics. CPU: the process's resident-set high-water mark
(Linux /proc), reset just before the call. That CPU method is sound only in a fresh worker
process started with a fixed malloc mmap threshold (see ``runner.worker_environment``), so that
freed buffers go back to the system and resident memory tracks live tensors.

That threshold (every buffer of 64 KiB or more gets its own mmap, unmapped when freed) slows code
that allocates many mid-sized temporaries: the binned algorithm by 2.3× at n = 4096. So a worker
measures memory first (the call after its warm-up call), then gives glibc's malloc the thresholds
a long-running process reaches by itself (``relax_cpu_allocator``) before its timed calls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from typing import Callable

import torch

# glibc mallopt() parameters (malloc.h) and the largest values its dynamic thresholds reach on
# 64-bit systems: buffers below 32 MiB are then served from (and freed back to) the heap.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_RELAXED_MMAP_THRESHOLD = 32 * 2**20
_RELAXED_TRIM_THRESHOLD = 2 * _RELAXED_MMAP_THRESHOLD


def rss_bytes(pid: int | str = "self", field: str = "VmRSS") -> int:
    """A memory field of /proc/<pid>/status in bytes ("VmRSS": resident now, "VmHWM": peak)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise ValueError(
        f"field must be a memory field of /proc/{pid}/status such as VmRSS or VmHWM; got {field!r}"
    )


def _reset_cpu_high_water_mark() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current resident size (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
        clear_refs.write("5")


def peak_bytes_of(call: Callable[[], None], device: str) -> int:
    """Run ``call`` once and return its peak memory (bytes) above what was in use before it."""
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        call()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    before = rss_bytes()
    _reset_cpu_high_water_mark()
    call()
    return max(rss_bytes(field="VmHWM") - before, 0)


def relax_cpu_allocator() -> None:
    """Give glibc's malloc the largest thresholds its dynamic adjustment reaches by itself (mmap
    32 MiB, trim 64 MiB: what a process that frees large tensors soon has), undoing a worker's
    fixed 64 KiB mmap threshold for the timed calls after the memory measurement. A no-op without
    glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(_M_MMAP_THRESHOLD, _RELAXED_MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _RELAXED_TRIM_THRESHOLD)
    except (OSError, AttributeError):
        pass
