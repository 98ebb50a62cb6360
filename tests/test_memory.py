"""Memory (SPEC "Cost"): nothing of size n³ ever exists, and autograd keeps only the features, both
sides' rank matrices and the student's dissimilarities (none of the three for algorithm="binned" past
the plan's budget for what the forward keeps, whose backward recomputes them block by block). The
reference backend's n³ memory stays within the estimate its fail-fast limit checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path as FilePath

import pytest
import torch

import pc_kernels
from helpers import DEVICE, OPTION_GRID, Path, random_features, usable_paths
from pc_kernels import plan as plan_module
from pc_kernels.stages.layout import drop_diagonal

FAST_PATHS = [path for path in usable_paths() if path.backend != "reference"]

# n = 512 float32: one n³ tensor would take 512 MiB; the process may grow by at most 128 MiB.
_BOUNDED_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    import pc_kernels
    torch.set_num_threads(1)
    algorithm, chunk_rows = sys.argv[1], int(sys.argv[2])
    n = 512
    student = torch.randn(n, 32, generator=torch.Generator().manual_seed(0)).requires_grad_()
    teacher = torch.randn(n, 32, generator=torch.Generator().manual_seed(1)).requires_grad_()
    options = dict(backend="torch", algorithm=algorithm)
    pc_kernels.perception_coherence_loss(student[:8], teacher[:8], **options).backward()  # warm up
    with open("/proc/self/statm") as f:
        address_space = int(f.read().split()[0]) * resource.getpagesize()
    headroom = 128 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (address_space + headroom, resource.RLIM_INFINITY))
    loss = pc_kernels.perception_coherence_loss(student, teacher, chunk_rows=chunk_rows, **options)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all() and torch.isfinite(teacher.grad).all()
    print("ok")
    """
)


@pytest.mark.skipif(not FilePath("/proc/self/statm").exists(), reason="needs Linux /proc and RLIMIT_AS")
@pytest.mark.parametrize("algorithm, chunk_rows", [("dense", 2), ("binned", 32)])
def test_torch_paths_never_allocate_an_n_cubed_tensor(algorithm: str, chunk_rows: int) -> None:
    """fwd+bwd at n = 512 inside an address-space limit far below one n³ float32 tensor (blocks of
    a few rows: the dense stage's tiles, the binned stage's grids of 4096 nodes per row)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PC_KERNELS_TORCH_WORKSPACE_BYTES": str(2**20)}
    result = subprocess.run(
        [sys.executable, "-c", _BOUNDED_MEMORY_SCRIPT, algorithm, str(chunk_rows)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def _saved_tensors(student: torch.Tensor, teacher: torch.Tensor, **options) -> list[torch.Tensor]:
    saved: list[torch.Tensor] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        pc_kernels.perception_coherence_loss(student, teacher, **options)
    return saved


@pytest.mark.parametrize("path", FAST_PATHS, ids=str)
@pytest.mark.parametrize("teacher_ranks", ["soft", "hard"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_saved_for_backward_are_the_features_both_rank_matrices_and_the_student_distances(
    path: Path, teacher_ranks: str, reduction: str
) -> None:
    n, p, q = 11, 4, 3
    student = random_features(n, p, seed=91).to(DEVICE).requires_grad_()
    teacher = random_features(n, q, seed=92).to(DEVICE).requires_grad_()
    saved = _saved_tensors(student, teacher, teacher_ranks=teacher_ranks, reduction=reduction, **path.options)
    # The features, R^S, R^T and D^S, and what is O(n (p + q)): the student's row statistics and both
    # sides' prepared features, so that the backward repeats no work it could keep in that much memory.
    small = [(n, p), (n, q), (n, 4), (n, p + 3), (n, q + 3)]
    assert sorted(tuple(t.shape) for t in saved) == sorted([*small, (n, n - 1), (n, n - 1), (n, n - 1)])
    assert saved[0].data_ptr() == student.data_ptr() and saved[1].data_ptr() == teacher.data_ptr()  # no copies
    # The three (n, n − 1) matrices are R^S, R^T and D^S in the candidate layout (D^S in the distance
    # stage's units, a power of two times D).
    kept = [t.detach() for t in saved[2:] if t.shape == (n, n - 1)]
    with torch.no_grad():
        ranks_s = drop_diagonal(pc_kernels.soft_ranks(student, **path.options), 0)
        ranks_t = drop_diagonal(pc_kernels.soft_ranks(teacher, hard=teacher_ranks == "hard", **path.options), 0)
        distances_s = drop_diagonal(pc_kernels.pairwise_dissimilarity(student, backend=path.backend), 0)
    assert any(torch.allclose(t, ranks_s, rtol=1e-12, atol=1e-14) for t in kept)
    assert any(torch.allclose(t, ranks_t, rtol=1e-12, atol=1e-14) for t in kept)
    assert any(torch.allclose(t / t.max(), distances_s / distances_s.max(), rtol=1e-12, atol=1e-14) for t in kept)


@pytest.mark.parametrize("path", [p for p in FAST_PATHS if not p.exact], ids=str)
def test_binned_past_its_budget_saves_the_features_and_empty_placeholders(monkeypatch, path: Path) -> None:
    monkeypatch.setattr(plan_module, "_kept_bytes", lambda device: 0)
    n = 11
    student = random_features(n, 4, seed=93, dtype=torch.float32).to(DEVICE).requires_grad_()
    teacher = random_features(n, 3, seed=94, dtype=torch.float32).to(DEVICE).requires_grad_()
    saved = _saved_tensors(student, teacher, **path.options)
    small = [(n, 4), (n, 3), (n, 4), (n, 4 + 3), (n, 3 + 3)]
    assert sorted(tuple(t.shape) for t in saved) == sorted([*small, (0, n - 1), (0, n - 1), (0, n - 1)])
    assert sum(t.numel() for t in saved) == n * (4 + 3 + 4 + 7 + 6)  # O(n (p + q)): nothing of size n²


# fwd+bwd of every option combination (and one rank matrix, soft and hard) in one process: the growth of
# the process's peak resident memory over its size before the first, against each call's estimate. Calls
# run in increasing order of their estimate, so a peak that stays within the running estimate stays
# within its own call's.
_REFERENCE_PEAK_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys, torch
    import pc_kernels
    from pc_kernels.plan import reference_memory_bytes
    torch.set_num_threads(1)
    n, dtype, grid = int(sys.argv[1]), getattr(torch, sys.argv[2]), json.loads(sys.argv[3])
    student = torch.randn(n, 24, dtype=dtype, generator=torch.Generator().manual_seed(0))
    teacher = torch.randn(n, 16, dtype=dtype, generator=torch.Generator().manual_seed(1))

    def loss(options):
        s, t = student.clone().requires_grad_(), teacher.clone().requires_grad_()
        pc_kernels.perception_coherence_loss(s, t, backend="reference", **options).backward()

    def ranks(hard):
        x = student.clone().requires_grad_()
        r = pc_kernels.soft_ranks(x, hard=hard, backend="reference")
        if not hard:
            r.sum().backward()

    calls = [(reference_memory_bytes(n, 24, dtype, 2), loss, options) for options in grid]
    calls += [(reference_memory_bytes(n, 24, dtype, 1), ranks, hard) for hard in (False, True)]
    pc_kernels.perception_coherence_loss(student[:8], teacher[:8], backend="reference")  # warm up
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for estimate, call, argument in sorted(calls, key=lambda c: c[0]):
        call(argument)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start
        assert grown <= estimate, (argument, grown, estimate)
    print("ok")
    """
)


@pytest.mark.skipif(not FilePath("/proc/self/statm").exists(), reason="needs Linux's resource accounting")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_reference_memory_estimate_bounds_its_peak(dtype: str) -> None:
    """backend="reference" refuses what its estimate puts above PC_KERNELS_REFERENCE_MEMORY_LIMIT: the
    estimate must bound what it really uses, for every option combination (soft and hard teacher ranks)."""
    result = subprocess.run(
        [sys.executable, "-c", _REFERENCE_PEAK_SCRIPT, "140", dtype, json.dumps(OPTION_GRID)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
