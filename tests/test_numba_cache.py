"""The compiled loops' on-disk cache (pc_kernels/stages/numba_cache.py): a later process loads every loop
instead of compiling it, and an edit of a module a loop compiles (not the loops' own file) is what runs.

Each process is a subprocess with a cache folder of its own, running a copy of the package (so the edit
test can change a source file): binned loss + backward on 2 torch threads (the loops' parallel
compilation) and on 1 (their serial one), which runs every loop, then the same on plain torch operations
(``PC_KERNELS_CPU_LOOPS=torch``), an independent implementation of the same formulas.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from pc_kernels import plan

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not plan._NUMBA_INSTALLED, reason="numba is not installed")

RUN = """
import json, os, sys, torch
import pc_kernels
from pc_kernels.stages import numba_loops

assert os.path.dirname(os.path.dirname(pc_kernels.__file__)) == sys.argv[1], pc_kernels.__file__
generator = torch.Generator().manual_seed(0)
student = torch.randn(40, 5, dtype=torch.float64, generator=generator).requires_grad_()
teacher = torch.randn(40, 6, dtype=torch.float64, generator=generator)

def loss_and_gradient(threads):
    torch.set_num_threads(threads)
    loss = pc_kernels.perception_coherence_loss(student, teacher, algorithm="binned")
    return [loss.item(), *torch.autograd.grad(loss, student)[0].flatten().tolist()]

compiled = {threads: loss_and_gradient(threads) for threads in (2, 1)}
loops = {name: loop for name, loop in vars(numba_loops).items() if isinstance(loop, numba_loops._Loop)}
cache = {
    f"{name} {variant}": [sum(dispatcher.stats.cache_hits.values()), sum(dispatcher.stats.cache_misses.values())]
    for name, loop in loops.items() for variant, dispatcher in (("parallel", loop.parallel), ("serial", loop.serial))
}
os.environ["PC_KERNELS_CPU_LOOPS"] = "torch"
print(json.dumps(dict(compiled=compiled[2], serial=compiled[1], plain=loss_and_gradient(2), cache=cache)))
"""

# An edit of each module whose code the loops compile, and the loops that compile the edited code: the
# basis (binned_ranks.py) and a constant that the row scale's coefficient reads (options.py); each edit
# changes the loss and its gradient.
EDITS = {
    "pc_kernels/stages/binned_ranks.py": (
        "-f * (f - 1.0) * (f - 2.0) * (1.0 / 6.0),",
        "-f * (f - 1.0) * (f - 2.0) * 0.25,",
        {"deposit", "read_ranks", "read_gradient"},
    ),
    "pc_kernels/options.py": ("ROW_STD_EPS = 1e-12", "ROW_STD_EPS = 0.125", {"row_scale_backward"}),
}


HELPER = """
import numba
EPS = 1e-12
@numba.njit
def shift(x):
    return x + EPS
"""


@pytest.mark.parametrize("call", ["shift(x)", "helper.shift(x)"])
def test_the_fingerprint_covers_a_constant_of_the_module_of_a_function_the_loop_calls(call: str) -> None:
    from pc_kernels.stages.numba_cache import fingerprint

    helper = types.ModuleType("helper")
    exec(HELPER, helper.__dict__)
    namespace = {"helper": helper} if call.startswith("helper.") else {"shift": helper.shift}
    exec(f"def loop(x):\n    return {call} * 2.0\n", namespace)
    before = fingerprint(namespace["loop"])
    helper.EPS = 0.5
    assert fingerprint(namespace["loop"]) != before
    helper.EPS = 1e-12
    assert fingerprint(namespace["loop"]) == before


def run(package: Path, cache: Path) -> dict:
    """One process's figures (module docstring): ``compiled`` and ``serial`` (the loss and its gradient by
    the loops on 2 and 1 threads), ``plain`` (by torch operations) and, per loop and variant, its cache
    hits and misses."""
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(package), PYTHONDONTWRITEBYTECODE="1")
    environment.pop("PC_KERNELS_CPU_LOOPS", None)
    result = subprocess.run(
        [sys.executable, "-c", RUN, str(package)],
        cwd=package,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def assert_loops_agree_with_torch(figures: dict) -> None:
    for compiled in (figures["compiled"], figures["serial"]):
        assert compiled == pytest.approx(figures["plain"], rel=1e-9, abs=1e-12)


@pytest.fixture(scope="module")
def warmed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A copy of the package and the cache folder its first process filled (and that process's figures)."""
    folder = tmp_path_factory.mktemp("warmed")
    shutil.copytree(ROOT / "pc_kernels", folder / "pc_kernels", ignore=shutil.ignore_patterns("__pycache__"))
    return folder, run(folder, folder / "cache")


def test_a_second_process_loads_every_loop_from_the_cache(warmed: tuple[Path, dict]) -> None:
    folder, first = warmed
    assert all(hits == 0 and misses > 0 for hits, misses in first["cache"].values()), first["cache"]
    second = run(folder, folder / "cache")
    assert all(hits > 0 and misses == 0 for hits, misses in second["cache"].values()), second["cache"]
    assert second["compiled"] == first["compiled"] and second["serial"] == first["serial"]
    assert_loops_agree_with_torch(second)


@pytest.mark.parametrize("edited", sorted(EDITS))
def test_an_edit_of_a_module_the_loops_compile_is_what_runs(warmed: tuple[Path, dict], edited: str) -> None:
    # Edited in place (numba's cache folder of a loop is named after its source file's folder); restored after.
    folder, before = warmed
    source = folder / edited
    old, new, edited_loops = EDITS[edited]
    text = source.read_text()
    assert text.count(old) == 1
    source.write_text(text.replace(old, new))
    try:
        after = run(folder, folder / "cache")
    finally:
        source.write_text(text)
    assert after["plain"] != pytest.approx(before["plain"], rel=1e-6)  # the edit changes the loss
    assert_loops_agree_with_torch(after)  # the loops run the edited code, not the cached one
    recompiled = {key.split()[0] for key, (_, misses) in after["cache"].items() if misses}
    assert recompiled == edited_loops  # and every other loop still loads from the cache
