"""The compiled CPU loops give the same results whatever x86-64 CPU numba compiles them for.

numba compiles for the CPU it runs on (``NUMBA_CPU_NAME``, ``NUMBA_CPU_FEATURES``), so a loop's machine code
differs between machines. Where the contract needs exact results (pc_kernels/stages/numba_loops.py, module
docstring) the loops use only correctly rounded operations; this file compiles them for several targets,
each in a subprocess of its own (numba reads its target once per process, and a test changes no
process-wide state), and checks that

* the generated code has no fused multiply-add and calls no vector math library (the two ways a compiler
  changes the rounding of a loop), and
* the numba loops give bitwise the torch stage's distances (every dissimilarity), so grid ties stay ties.

Code built for another CPU name keeps the host's instruction set (numba's default features), so it runs
here; "generic" is the baseline x86-64 instruction set. .ci/run also runs the stage tests under two targets.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pc_kernels import plan

ROOT = Path(__file__).resolve().parent.parent

# Baseline x86-64 and an AVX-512 Intel server (the CPU where a vectorized square root once broke ties).
TARGETS = ["generic", "sapphirerapids"]

CHECK = """
import torch
from pc_kernels import perception_coherence_loss
from pc_kernels.stages import distances

torch.set_num_threads(2)  # the parallel compilation, as on a 2-core machine
grid = torch.tensor([[0, 0, 0], [1, 0, 2], [0, 1, 2], [2, 2, 0], [1, 1, 1], [3, 0, 1], [0, 3, 1], [2, 0, 2]])
batches = [grid.to(torch.float64) + 2.0**40 + 0.5, torch.randn(33, 7, generator=torch.Generator().manual_seed(0))]
for x in batches:
    for dissimilarity in ("euclidean", "sqeuclidean", "cosine"):
        prepared = distances.prepare(x, dissimilarity)
        n = x.shape[0]
        compiled = distances.NumbaDissimilarity().rows(prepared, 0, n)
        assert torch.equal(compiled, distances.TorchDissimilarity().rows(prepared, 0, n)), dissimilarity
for algorithm in ("dense", "binned"):  # compiles every other loop, forward and backward
    student = torch.randn(40, 5, dtype=torch.float64, requires_grad=True)
    perception_coherence_loss(student, torch.randn(40, 6, dtype=torch.float64), algorithm=algorithm).backward()
print("checked")
"""

# Fused multiply-adds (FMA3 and FMA4), and calls into a vector math library (Intel SVML, glibc's libmvec).
ROUNDING_CHANGES = re.compile(r"\bv?f[n]?m(?:add|sub)\w*|__svml_\w+|_ZGV\w+")


@pytest.mark.skipif(not plan._NUMBA_INSTALLED, reason="numba is not installed")
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 target names")
@pytest.mark.parametrize("target", TARGETS)
def test_compiled_loops_round_the_same_on_every_target(target: str, tmp_path: Path) -> None:
    environment = dict(os.environ, NUMBA_CPU_NAME=target, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_DUMP_ASSEMBLY="1")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("checked")
    assembly = result.stdout
    assert "distance_rows" in assembly and "deposit" in assembly  # the dump covers the loops
    assert sorted(set(ROUNDING_CHANGES.findall(assembly))) == []
