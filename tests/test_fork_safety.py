"""The compiled CPU loops in forked children and under concurrent calls (pc_kernels/stages/numba_loops.py,
"Threading layer"): a child forked after the parent's loops ran on several threads (how torch's DataLoader
workers start) computes the loss on several threads too, and two threads may call the loss at once.

Each check runs in a subprocess of its own: numba's threading layer is chosen once per process, and a
test must not fork the test runner.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pc_kernels import plan

ROOT = Path(__file__).resolve().parent.parent

# The parent runs only the loops on 2 threads (a parent's own torch OpenMP regions would hang a 2-thread
# child whatever the loops do: GNU OpenMP is not fork-safe); the child runs every algorithm on 2 threads.
FORKED_CHILD = textwrap.dedent(
    """
    import faulthandler, os, numpy as np, torch
    torch.set_num_threads(2)
    from pc_kernels import perception_coherence_loss
    from pc_kernels.stages.numba_loops import row_largest
    row_largest(np.random.rand(64, 63), np.empty(64))
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(120, exit=True)
        student, teacher = torch.randn(80, 4), torch.randn(80, 3)
        losses = [perception_coherence_loss(student, teacher, algorithm=a) for a in ("dense", "binned")]
        os._exit(0 if all(torch.isfinite(v) for v in losses) else 3)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status))
    """
)

CONCURRENT_CALLS = textwrap.dedent(
    """
    import threading, torch
    torch.set_num_threads(2)
    from pc_kernels import perception_coherence_loss
    student, teacher = torch.randn(300, 4, dtype=torch.float64), torch.randn(300, 3, dtype=torch.float64)
    expected = perception_coherence_loss(student, teacher, algorithm="binned")
    results = []
    def call():
        for _ in range(5):
            results.append(perception_coherence_loss(student, teacher, algorithm="binned"))
    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 15 and all(torch.equal(r, expected) for r in results)
    print("concurrent ok")
    """
)


def _run(script: str) -> str:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    environment.pop("NUMBA_THREADING_LAYER", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.skipif(not plan._NUMBA_INSTALLED, reason="numba is not installed")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_after_the_loops_ran_computes_the_loss_on_two_threads() -> None:
    assert _run(FORKED_CHILD).split() == ["child", "0"]


@pytest.mark.skipif(not plan._NUMBA_INSTALLED, reason="numba is not installed")
def test_threads_may_call_the_loops_at_once() -> None:
    assert _run(CONCURRENT_CALLS).strip() == "concurrent ok"
