"""The memory-bounded torch backend: agreement with the reference backend, exact gradients,
chunk and strip boundaries, dtypes and layouts, and bounded memory (no n³ tensor)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import pc_kernels
from helpers import OPTION_GRID, REDUCTIONS, option_id, random_features
from pc_kernels import torch_backend
from pc_kernels.torch_soft_ranks import soft_ranks

# n = 21 gives rows of 20 candidates: two strips of the default height 16 (one full, one short).
N = 21
ROW_SUBSETS = (None, (3, 11))
CHUNK_ROWS = (1, 4, N)  # one row, a non-divisor of every row count used, every row


def _loss_and_grads(backend, student, teacher, weights, **options):
    s = student.clone().requires_grad_()
    t = teacher.clone().requires_grad_(options.get("teacher_ranks", "soft") == "soft")
    value = pc_kernels.perception_coherence_loss(s, t, backend=backend, **options)
    inputs = [s] + ([t] if t.requires_grad else [])
    grads = torch.autograd.grad((value * weights).sum(), inputs)
    return (value, *grads)


@pytest.mark.parametrize("chunk_rows", CHUNK_ROWS)
@pytest.mark.parametrize("rows", ROW_SUBSETS, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", OPTION_GRID, ids=option_id)
def test_values_and_gradients_match_the_reference(options, reduction, rows, chunk_rows):
    student = random_features(N, 5, seed=1)
    teacher = random_features(N, 4, seed=2)
    saved = (student.clone(), teacher.clone())
    m = N if rows is None else rows[1] - rows[0]
    weights = random_features(m, 1, seed=3)[:, 0] if reduction == "none" else torch.tensor(1.0, dtype=torch.float64)
    common = dict(tau=0.3, reduction=reduction, rows=rows, **options)
    expected = _loss_and_grads("reference", student, teacher, weights, **common)
    got = _loss_and_grads("torch", student, teacher, weights, chunk_rows=chunk_rows, **common)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    assert torch.equal(student, saved[0]) and torch.equal(teacher, saved[1])


def _brute_force_soft_ranks(scaled: torch.Tensor, tau: float) -> torch.Tensor:
    """R[r, j] = 1/(w−1) Σ_{k != j} σ((scaled[r, j] − scaled[r, k]) / τ) by a dense (m, w, w) sum."""
    w = scaled.shape[1]
    terms = torch.sigmoid((scaled[:, :, None] - scaled[:, None, :]) / tau)
    return (terms.sum(dim=2) - 0.5) / (w - 1)


@pytest.mark.parametrize("strip", (1, 3, 10))
@pytest.mark.parametrize("chunk_rows", (1, 3, 7))
def test_soft_ranks_are_exact_for_any_chunk_and_strip(chunk_rows, strip):
    scaled = random_features(7, 10, seed=4).requires_grad_()
    upstream = random_features(7, 10, seed=5)
    expected = _brute_force_soft_ranks(scaled, 0.4)
    got = soft_ranks(scaled, 0.4, chunk_rows, strip)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    (grad_expected,) = torch.autograd.grad(expected, scaled, upstream)
    (grad_got,) = torch.autograd.grad(got, scaled, upstream)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-10, atol=1e-13)


def test_soft_ranks_accept_a_stride_zero_upstream_gradient():
    scaled = random_features(5, 8, seed=6).requires_grad_()
    expanded = torch.ones((), dtype=torch.float64).expand(5, 8)
    assert expanded.stride() == (0, 0)
    (from_expanded,) = torch.autograd.grad(soft_ranks(scaled, 0.5, 2, 3), scaled, expanded)
    (from_dense,) = torch.autograd.grad(soft_ranks(scaled, 0.5, 2, 3), scaled, torch.ones(5, 8, dtype=torch.float64))
    torch.testing.assert_close(from_expanded, from_dense, rtol=0, atol=0)


@pytest.mark.parametrize("options", OPTION_GRID, ids=option_id)
def test_gradcheck_student_and_teacher(options):
    student = random_features(6, 3, seed=7).requires_grad_()
    teacher = random_features(6, 2, seed=8).requires_grad_(options["teacher_ranks"] == "soft")

    def loss(s, t):
        return pc_kernels.perception_coherence_loss(
            s, t, tau=0.5, reduction="none", rows=(1, 5), chunk_rows=3, backend="torch", **options
        )

    assert torch.autograd.gradcheck(loss, (student, teacher), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_per_row_losses_backpropagate_a_stride_zero_gradient(reduction):
    """loss.sum() of reduction="none" sends an expanded (stride-0) gradient into the backend."""
    student = random_features(N, 4, seed=9)
    teacher = random_features(N, 3, seed=10)
    weights = torch.tensor(1.0, dtype=torch.float64)
    expected = _loss_and_grads("reference", student, teacher, weights, reduction=reduction)
    got = _loss_and_grads("torch", student, teacher, weights, reduction=reduction, chunk_rows=5)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ("euclidean", "sqeuclidean", "cosine"))
def test_float32_dissimilarities_ranks_and_gradients_match_the_reference(kind):
    student = random_features(40, 16, seed=11, dtype=torch.float32)
    student[7] = student[3]  # a duplicate row: D = 0 exactly, with a zero euclidean gradient there
    teacher = random_features(40, 8, seed=12, dtype=torch.float32)
    torch.testing.assert_close(
        pc_kernels.pairwise_dissimilarity(student, kind, backend="torch"),
        pc_kernels.pairwise_dissimilarity(student, kind, backend="reference"),
        rtol=2e-6,
        atol=2e-6,
    )
    assert pc_kernels.pairwise_dissimilarity(student, kind, backend="torch")[3, 7] == 0
    torch.testing.assert_close(
        pc_kernels.soft_ranks(student, dissimilarity=kind, backend="torch"),
        pc_kernels.soft_ranks(student, dissimilarity=kind, backend="reference"),
        rtol=1e-5,
        atol=1e-6,
    )
    weights = torch.tensor(1.0)
    expected = _loss_and_grads("reference", student, teacher, weights, dissimilarity=kind)
    got = _loss_and_grads("torch", student, teacher, weights, dissimilarity=kind, chunk_rows=7)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-3 * e.abs().max().item())


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_half_precision_inputs_match_the_reference_on_their_float32_values(dtype):
    student = random_features(12, 6, seed=13, dtype=dtype)
    teacher = random_features(12, 5, seed=14, dtype=dtype)
    got = pc_kernels.perception_coherence_loss(student, teacher, backend="torch", reduction="none")
    expected = pc_kernels.perception_coherence_loss(student.float(), teacher.float(), backend="reference", reduction="none")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_non_contiguous_inputs_match_contiguous_copies():
    student = random_features(5, N, seed=15).T  # (N, 5), transposed storage
    teacher = random_features(N, 8, seed=16)[:, ::2]  # (N, 4), strided columns
    assert not student.is_contiguous() and not teacher.is_contiguous()
    weights = torch.tensor(1.0, dtype=torch.float64)
    got = _loss_and_grads("torch", student, teacher, weights, discrepancy="spearman")
    expected = _loss_and_grads("torch", student.contiguous(), teacher.contiguous(), weights, discrepancy="spearman")
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


@pytest.mark.parametrize("hard", (False, True))
def test_rank_matrix_matches_the_reference_with_ties(hard):
    x = random_features(N, 3, seed=17)
    x[5] = x[2]
    x[9] = 2.0 * x[4]  # equal cosine dissimilarities
    for kind in ("euclidean", "cosine"):
        torch.testing.assert_close(
            pc_kernels.soft_ranks(x, tau=0.2, dissimilarity=kind, hard=hard, backend="torch"),
            pc_kernels.soft_ranks(x, tau=0.2, dissimilarity=kind, hard=hard, backend="reference"),
            rtol=1e-12,
            atol=1e-14,
        )


def test_tiny_workspace_budget_still_processes_one_row_at_a_time(monkeypatch):
    monkeypatch.setenv("PC_KERNELS_TORCH_WORKSPACE_BYTES", "1")
    options = pc_kernels.options.LossOptions().validated()
    assert torch_backend.chunk_rows(options, 1000, torch.zeros(1)) == 1
    student, teacher = random_features(N, 4, seed=18), random_features(N, 4, seed=19)
    torch.testing.assert_close(
        pc_kernels.perception_coherence_loss(student, teacher, backend="torch"),
        pc_kernels.perception_coherence_loss(student, teacher, backend="reference"),
        rtol=1e-10,
        atol=1e-12,
    )


def test_bad_workspace_budget_is_rejected_by_name(monkeypatch):
    monkeypatch.setenv("PC_KERNELS_TORCH_WORKSPACE_BYTES", "lots")
    x = random_features(5, 2, seed=20)
    with pytest.raises(ValueError, match="PC_KERNELS_TORCH_WORKSPACE_BYTES"):
        pc_kernels.perception_coherence_loss(x, x, backend="torch")


# n = 512 float32: one n³ tensor would take 512 MiB; the process may grow by at most 128 MiB.
_BOUNDED_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, torch
    import pc_kernels
    torch.set_num_threads(1)
    n = 512
    student = torch.randn(n, 32, generator=torch.Generator().manual_seed(0)).requires_grad_()
    teacher = torch.randn(n, 32, generator=torch.Generator().manual_seed(1)).requires_grad_()
    pc_kernels.perception_coherence_loss(student[:8], teacher[:8], backend="torch").backward()
    with open("/proc/self/statm") as f:
        address_space = int(f.read().split()[0]) * resource.getpagesize()
    headroom = 128 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (address_space + headroom, resource.RLIM_INFINITY))
    loss = pc_kernels.perception_coherence_loss(student, teacher, backend="torch", chunk_rows=2)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all() and torch.isfinite(teacher.grad).all()
    print("ok")
    """
)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc and RLIMIT_AS")
def test_never_allocates_an_n_cubed_tensor():
    """fwd+bwd at n = 512 inside an address-space limit far below one n³ float32 tensor."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PC_KERNELS_TORCH_WORKSPACE_BYTES": str(2**20)}
    result = subprocess.run(
        [sys.executable, "-c", _BOUNDED_MEMORY_SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
@pytest.mark.parametrize("options", OPTION_GRID[::5], ids=option_id)
def test_cuda_matches_the_reference(options, dtype):
    student = random_features(N, 5, seed=21, dtype=dtype).cuda()
    teacher = random_features(N, 4, seed=22, dtype=dtype).cuda()
    weights = torch.tensor(1.0, dtype=dtype, device="cuda")
    tolerance = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    expected = _loss_and_grads("reference", student, teacher, weights, rows=(2, 17), **options)
    got = _loss_and_grads("torch", student, teacher, weights, rows=(2, 17), chunk_rows=4, **options)
    for g, e in zip(got, expected):
        assert g.device.type == "cuda"
        torch.testing.assert_close(g, e, **tolerance)
