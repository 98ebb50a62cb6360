"""The first call in a fresh process: ``python -m benchmarks.first_call [--n 128] [--threads T]``.

Runs, each in a new Python process on CPU, an import of pc_kernels and a first loss + backward of n
samples (default options), twice with one numba cache folder: "cold" (the folder empty: numba compiles
the loops) and "warm" (its on-disk cache present, as on every later start). Prints, per start, the
seconds of the import and of the first call and how much the process's resident memory grew over both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

FIRST_CALL = """
import json, resource, sys, time
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
before, start = resident(), time.perf_counter()
import torch
import pc_kernels
imported = time.perf_counter()
threads = int(sys.argv[2])
if threads:
    torch.set_num_threads(threads)
n = int(sys.argv[1])
generator = torch.Generator().manual_seed(0)
student = torch.randn(n, 64, generator=generator).requires_grad_()
teacher = torch.randn(n, 96, generator=generator)
called = time.perf_counter()
criterion = pc_kernels.PerceptionCoherenceLoss()
criterion(student, teacher).backward()
done = time.perf_counter()
print(json.dumps(dict(import_s=imported - start, first_call_s=done - called, rss_growth_bytes=resident() - before,
                      algorithm=criterion.last_plan.algorithm, loops=criterion.last_plan.loops,
                      threads=torch.get_num_threads())))
"""


def first_call(n: int, threads: int, cache: str) -> dict:
    """One fresh process's figures (see the module docstring), numba caching into ``cache``."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": cache}
    result = subprocess.run(
        [sys.executable, "-c", FIRST_CALL, str(n), str(threads)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_call", description=__doc__)
    parser.add_argument("--n", type=int, default=128, help="batch size of the first call (default 128)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's default)")
    arguments = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; n = {arguments.n}")
    with tempfile.TemporaryDirectory() as cache:
        for start in ("cold", "warm"):
            figures = first_call(arguments.n, arguments.threads, cache)
            print(
                f"{start}: import {figures['import_s']:.2f} s, first loss+backward {figures['first_call_s']:.2f} s "
                f"({figures['algorithm']}, {figures['loops']} loops, {figures['threads']} threads), "
                f"RSS +{figures['rss_growth_bytes'] / 2**20:.0f} MiB"
            )


if __name__ == "__main__":
    main()
