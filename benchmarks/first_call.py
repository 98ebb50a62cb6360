"""The first call in a fresh process: ``python -m benchmarks.first_call [--n 128] [--threads T] [--repeats R]``.

Runs, each in a new Python process on CPU with one numba cache folder, an import of torch and pc_kernels,
the construction of a torch optimizer (which imports ``torch._dynamo``, as every ``torch.optim`` optimizer
does) and a first loss + backward of n samples (default options):

    cold          the cache folder empty: numba compiles the loops the call runs and caches them
    warm          the folder as the cold start left it, as on every later start
    warm, bare    the same without an optimizer, as a script that only evaluates the loss (the loss's
                  operators do not import ``torch._dynamo``: the bare start does without it)

Prints, per start, the seconds of each step, how many of the compiled loops numba compiled and how many
it loaded from its cache, and how much the process's resident memory grew. With ``--repeats R`` the
three starts run R times, each time with a new cache folder, and each figure is the least of the R (the
one least slowed by other jobs on a shared machine).
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
n, threads, optimizer = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "optimizer"
if threads:
    torch.set_num_threads(threads)
generator = torch.Generator().manual_seed(0)
student = torch.randn(n, 64, generator=generator).requires_grad_()
teacher = torch.randn(n, 96, generator=generator)
built = time.perf_counter()
if optimizer:
    torch.optim.SGD([student], lr=0.1)
called = time.perf_counter()
criterion = pc_kernels.PerceptionCoherenceLoss()
criterion(student, teacher).backward()
done = time.perf_counter()
compiled = loaded = 0
if "pc_kernels.stages.numba_loops" in sys.modules:
    from pc_kernels.stages import numba_loops
    for loop in vars(numba_loops).values():
        if isinstance(loop, numba_loops._Loop):
            for dispatcher in (loop.parallel, loop.serial):
                compiled += sum(dispatcher.stats.cache_misses.values())
                loaded += sum(dispatcher.stats.cache_hits.values())
print(json.dumps(dict(import_s=imported - start, optimizer_s=called - built if optimizer else None,
                      first_call_s=done - called, rss_growth_bytes=resident() - before, compiled=compiled,
                      loaded=loaded, algorithm=criterion.last_plan.algorithm, loops=criterion.last_plan.loops,
                      threads=torch.get_num_threads())))
"""

STARTS = (("cold", "optimizer"), ("warm", "optimizer"), ("warm, bare", "bare"))


def first_call(n: int, threads: int, optimizer: str, cache: str) -> dict:
    """One fresh process's figures (see the module docstring), numba caching into ``cache``."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": cache}
    result = subprocess.run(
        [sys.executable, "-c", FIRST_CALL, str(n), str(threads), optimizer],
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
    parser.add_argument("--repeats", type=int, default=1, help="runs of the three starts; the least of each figure")
    arguments = parser.parse_args()
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} CPUs; n = {arguments.n}; OMP_WAIT_POLICY {policy}")
    runs: dict[str, list[dict]] = {start: [] for start, _ in STARTS}
    for _ in range(arguments.repeats):
        with tempfile.TemporaryDirectory() as cache:
            for start, optimizer in STARTS:
                runs[start].append(first_call(arguments.n, arguments.threads, optimizer, cache))
    for start, optimizer in STARTS:
        least = {key: min(run[key] for run in runs[start]) for key in ("import_s", "first_call_s", "rss_growth_bytes")}
        figures = runs[start][0]
        built = min(run["optimizer_s"] for run in runs[start]) if optimizer == "optimizer" else None
        print(
            f"{start}: import {least['import_s']:.2f} s, "
            + (f"optimizer {built:.2f} s, " if built is not None else "")
            + f"first loss+backward {least['first_call_s']:.2f} s "
            f"({figures['algorithm']}, {figures['loops']} loops, {figures['threads']} threads; "
            f"loops compiled {figures['compiled']}, loaded from numba's cache {figures['loaded']}), "
            f"RSS +{least['rss_growth_bytes'] / 2**20:.0f} MiB"
        )


if __name__ == "__main__":
    main()
