"""Every fast computation path against the reference backend: values and gradients over the option
grid, reductions, row subsets and pipeline blocks; gradcheck of the exact paths; the binned paths'
gradients against the dense ones; dtypes, layouts, determinism, block and row-subset independence.

Tolerances. Exact (dense) paths compute the same formulas as the reference up to rounding: float64
results agree to rtol 1e-10. Binned paths approximate each soft rank within RANK_TOLERANCE = 1e-5
(pc_kernels/stages/binned_ranks.py): the loss must stay within 1e-4 relative, and each gradient within
cosine 0.9999 and relative L2 error 1e-3 of the dense one (measured here: 3e-5 and 4e-5 at worst).

Triton paths under the interpreter (no GPU) take about 0.1 s per kernel launch, so they run a thinned
grid at a smaller n: every option combination once, with the reductions, row subsets and block sizes
cycled through so that each of their combinations appears too.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import pc_kernels
from helpers import (
    DEVICE,
    DISCREPANCIES,
    OPTION_GRID,
    REDUCTIONS,
    Path,
    cosine,
    loss_and_grads,
    option_id,
    random_features,
    usable_paths,
)
from pc_kernels.plan import _NUMBA_INSTALLED
from pc_kernels.stages import distances
from pc_kernels.stages.binned_ranks import RANK_TOLERANCE

FAST_PATHS = [path for path in usable_paths() if path.backend != "reference"]
# The CPU loops of the stages that have compiled ones (PC_KERNELS_CPU_LOOPS; "torch" is what CUDA runs).
CPU_LOOPS = ["numba", "torch"] if _NUMBA_INSTALLED and DEVICE == "cpu" else ["torch"]
BINNED_PATHS = [path for path in FAST_PATHS if not path.exact]
# n = 21: rows of 20 candidates, two strips of the dense torch stage (16 + 4) and, for Triton, a
# rank tile of 32 with a tail and two distance tiles of 16 (one short). Interpreted: n = 13 (tiles
# of 16 with tails).
N = 21
N_INTERPRETED = 13


def _sizes(path: Path) -> tuple[int, tuple[int, int], tuple[int, ...]]:
    """n, a row subset and the block sizes (one row, a non-divisor of every row count, every row)."""
    n = N_INTERPRETED if path.interpreted else N
    return n, (3, n - 2), (1, 4, n)


def _grid_cases() -> list:
    cases = []
    for path in FAST_PATHS:
        n, subset, chunks = _sizes(path)
        subsets = (None, subset)
        if path.interpreted:
            combos = [
                (options, REDUCTIONS[i % 3], subsets[(i // 3) % 2], chunks[(i // 6) % 3])
                for i, options in enumerate(OPTION_GRID)
            ]
        else:
            combos = list(itertools.product(OPTION_GRID, REDUCTIONS, subsets, chunks))
        for options, reduction, rows, chunk in combos:
            case_id = f"{path}-{option_id(options)}-{reduction}-rows{rows}-chunk{chunk}"
            cases.append(pytest.param(path, n, options, reduction, rows, chunk, id=case_id))
    return cases


def assert_agree(path: Path, got, expected) -> None:
    """(loss, gradients) of ``path`` against the dense ones, with the path's tolerances (module docstring)."""
    (value, grads), (want, want_grads) = got, expected
    assert value.dtype == want.dtype and value.shape == want.shape
    if path.exact:
        torch.testing.assert_close(value, want, rtol=1e-10, atol=1e-12)
        for g, w in zip(grads, want_grads, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
        return
    assert torch.all((value - want).abs() <= 1e-4 * want.abs()), (value, want)
    for g, w in zip(grads, want_grads, strict=True):
        if w.norm() <= 1e-12:  # zero up to rounding (a hard teacher's, or spearman's at n = 3)
            assert g.norm() <= 1e-12
            continue
        assert cosine(g, w) >= 0.9999
        assert (g - w).norm() <= 1e-3 * w.norm()


def _inputs(n: int, p: int, q: int, seed: int, options: dict, dtype=torch.float64):
    student = random_features(n, p, seed=seed, dtype=dtype).to(DEVICE).requires_grad_()
    teacher = random_features(n, q, seed=seed + 1, dtype=dtype).to(DEVICE)
    return student, teacher.requires_grad_(options.get("teacher_ranks", "soft") == "soft")


@pytest.mark.parametrize("path, n, options, reduction, rows, chunk_rows", _grid_cases())
def test_values_and_gradients_match_the_reference(path, n, options, reduction, rows, chunk_rows):
    student, teacher = _inputs(n, 5, 4, seed=1, options=options)
    saved = (student.detach().clone(), teacher.detach().clone())
    m = n if rows is None else rows[1] - rows[0]
    weights = random_features(m, 1, seed=3)[:, 0].to(DEVICE) if reduction == "none" else None
    common = dict(tau=0.3, reduction=reduction, rows=rows, **options)
    expected = loss_and_grads(student, teacher, weights, backend="reference", **common)
    got = loss_and_grads(student, teacher, weights, chunk_rows=chunk_rows, **path.options, **common)
    assert_agree(path, got, expected)
    assert torch.equal(student.detach(), saved[0]) and torch.equal(teacher.detach(), saved[1])


def _gradcheck_cases() -> list:
    cases = []
    for path in FAST_PATHS:
        if not path.exact:
            continue
        grid = OPTION_GRID if not path.interpreted else OPTION_GRID[::7]  # 6 combos, every kind
        cases += [pytest.param(path, options, id=f"{path}-{option_id(options)}") for options in grid]
    return cases


@pytest.mark.parametrize("path, options", _gradcheck_cases())
def test_gradcheck_student_and_teacher(path: Path, options: dict) -> None:
    student, teacher = _inputs(6, 3, 2, seed=7, options=options)

    def loss(s, t):
        return pc_kernels.perception_coherence_loss(
            s, t, tau=0.5, reduction="none", rows=(1, 5), chunk_rows=3, **path.options, **options
        )

    assert torch.autograd.gradcheck(loss, (student, teacher), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("path", [p for p in FAST_PATHS if p.exact], ids=str)
def test_full_gradcheck_at_tiny_n(path: Path) -> None:
    """n = 4 (rows of 3 candidates, the smallest tiles), the default options and every discrepancy,
    every direction of the Jacobian (not gradcheck's fast mode)."""
    student, teacher = _inputs(4, 2, 2, seed=22, options={})
    for discrepancy in DISCREPANCIES:

        def loss(s, t, discrepancy=discrepancy):
            return pc_kernels.perception_coherence_loss(s, t, tau=0.5, discrepancy=discrepancy, **path.options)

        assert torch.autograd.gradcheck(loss, (student, teacher))


def _binned_cases() -> list:
    cases = []
    for path in BINNED_PATHS:
        grid = OPTION_GRID if not path.interpreted else OPTION_GRID[::5]
        cases += [pytest.param(path, options, id=f"{path}-{option_id(options)}") for options in grid]
    return cases


@pytest.mark.parametrize("path, options", _binned_cases())
def test_binned_gradients_match_the_dense_gradients(path: Path, options: dict) -> None:
    """The binned backward is not the derivative of the binned forward (each kernel sum is binned
    separately), so no gradcheck: its gradient is held to the dense gradient instead, at two τ."""
    n = 21 if path.interpreted else 41
    student, teacher = _inputs(n, 5, 7, seed=1, options=options)
    for tau in (0.05, 0.5):
        dense = loss_and_grads(student, teacher, backend="torch", tau=tau, **options)
        binned = loss_and_grads(student, teacher, tau=tau, **path.options, **options)
        assert_agree(path, binned, dense)


@pytest.mark.parametrize("path", FAST_PATHS, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_per_row_losses_backpropagate_a_stride_zero_gradient(path: Path, reduction: str) -> None:
    """loss.sum() of reduction="none" sends an expanded (stride-0) gradient into the backward."""
    n = N_INTERPRETED if path.interpreted else N
    student, teacher = _inputs(n, 4, 3, seed=9, options={})
    expected = loss_and_grads(student, teacher, backend="reference", reduction=reduction)
    got = loss_and_grads(student, teacher, reduction=reduction, chunk_rows=5, **path.options)
    assert_agree(path, got, expected)


@pytest.mark.parametrize("path", FAST_PATHS, ids=str)
@pytest.mark.parametrize("kind", ("euclidean", "sqeuclidean", "cosine"))
def test_float32_dissimilarities_ranks_and_gradients_match_the_reference(path: Path, kind: str) -> None:
    n = 23 if path.interpreted else 40
    student = random_features(n, 16, seed=11, dtype=torch.float32).to(DEVICE)
    student[7] = student[3]  # a duplicate row: D = 0 exactly, with a zero euclidean gradient there
    teacher = random_features(n, 8, seed=12, dtype=torch.float32).to(DEVICE)
    got = pc_kernels.pairwise_dissimilarity(student, kind, backend=path.backend)
    torch.testing.assert_close(
        got, pc_kernels.pairwise_dissimilarity(student, kind, backend="reference"), rtol=2e-6, atol=2e-6
    )
    if kind != "cosine":
        assert got[3, 7] == 0 and got[7, 3] == 0
    ranks = pc_kernels.soft_ranks(student, dissimilarity=kind, **path.options)
    want = pc_kernels.soft_ranks(student, dissimilarity=kind, backend="reference")
    # float32 rounding of the ranks (1e-6), plus the binned error bound.
    torch.testing.assert_close(ranks, want, rtol=1e-5, atol=1e-6 + (0 if path.exact else RANK_TOLERANCE))
    student.requires_grad_()
    teacher.requires_grad_()
    expected = loss_and_grads(student, teacher, backend="reference", dissimilarity=kind)
    value, grads = loss_and_grads(student, teacher, dissimilarity=kind, chunk_rows=7, **path.options)
    if path.exact:
        # float32 rounding of distances and ranks, amplified in the gradient by 1/τ.
        torch.testing.assert_close(value, expected[0], rtol=1e-4, atol=1e-6)
        for g, e in zip(grads, expected[1], strict=True):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-3 * e.abs().max().item())
    else:
        assert_agree(path, (value, grads), expected)


@pytest.mark.parametrize("path", FAST_PATHS, ids=str)
@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_half_precision_inputs_match_the_reference_on_their_float32_values(path: Path, dtype: torch.dtype) -> None:
    student = random_features(12, 6, seed=13, dtype=dtype).to(DEVICE)
    teacher = random_features(12, 5, seed=14, dtype=dtype).to(DEVICE)
    got = pc_kernels.perception_coherence_loss(student, teacher, reduction="none", **path.options)
    expected = pc_kernels.perception_coherence_loss(
        student.float(), teacher.float(), backend="reference", reduction="none"
    )
    assert got.dtype == torch.float32
    if path.exact:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    else:
        assert torch.all((got - expected).abs() <= 1e-4 * expected.abs())


@pytest.mark.parametrize("path", FAST_PATHS, ids=str)
def test_non_contiguous_inputs_match_contiguous_copies_bitwise(path: Path) -> None:
    n = N_INTERPRETED if path.interpreted else N
    student = random_features(5, n, seed=15).to(DEVICE).T.requires_grad_()  # (n, 5), transposed storage
    teacher = random_features(n, 8, seed=16).to(DEVICE)[:, ::2].requires_grad_()  # (n, 4), strided columns
    assert not student.is_contiguous() and not teacher.is_contiguous()
    got = loss_and_grads(student, teacher, discrepancy="spearman", **path.options)
    contiguous = (student.detach().contiguous().requires_grad_(), teacher.detach().contiguous().requires_grad_())
    expected = loss_and_grads(*contiguous, discrepancy="spearman", **path.options)
    assert torch.equal(got[0], expected[0])
    assert all(torch.equal(g, e) for g, e in zip(got[1], expected[1], strict=True))


@pytest.mark.parametrize("path", FAST_PATHS, ids=str)
@pytest.mark.parametrize("hard", (False, True))
def test_rank_matrix_matches_the_reference_with_ties(path: Path, hard: bool) -> None:
    x = random_features(N_INTERPRETED if path.interpreted else N, 3, seed=17).to(DEVICE)
    x[5] = x[2]
    x[9] = 2.0 * x[4]  # equal cosine dissimilarities
    for kind in ("euclidean", "cosine"):
        got = pc_kernels.soft_ranks(x, tau=0.2, dissimilarity=kind, hard=hard, **path.options)
        want = pc_kernels.soft_ranks(x, tau=0.2, dissimilarity=kind, hard=hard, backend="reference")
        # Hard ranks are exact on every path (ties included); binned soft ranks within their bound.
        atol = 1e-14 if hard or path.exact else RANK_TOLERANCE
        torch.testing.assert_close(got, want, rtol=1e-12, atol=atol)
        assert torch.equal(got.diagonal(), torch.zeros_like(got.diagonal()))


@pytest.mark.parametrize("loops", CPU_LOOPS)
@pytest.mark.parametrize("path", FAST_PATHS, ids=str)
def test_deterministic_and_independent_of_blocks_and_row_subsets(monkeypatch, path: Path, loops: str) -> None:
    """Calls give bitwise-identical float64 results whatever the blocks (``chunk_rows``); each reference
    row's loss and gradient contribution do not depend on which row subset
    computes it (up to the last bits of matrix products of different shapes). Tiles of the Gram products
    of 4 rows, so that a small batch has several (the rule is the same for the default size)."""
    monkeypatch.setenv("PC_KERNELS_CPU_LOOPS", loops)
    monkeypatch.setattr(distances, "GRAM_ROWS", 4)
    n = N_INTERPRETED if path.interpreted else 37
    student, teacher = _inputs(n, 5, 4, seed=3, options={})
    options = dict(reduction="none", discrepancy="spearman", **path.options)
    first = loss_and_grads(student, teacher, **options)
    for chunk in (1, 6, n, None):
        losses, grads = loss_and_grads(student, teacher, chunk_rows=chunk, **options)
        assert torch.equal(losses, first[0]), chunk
        assert all(torch.equal(g, f) for g, f in zip(grads, first[1], strict=True)), chunk
    for rows in ((0, 1), (4, n - 3), (n - 1, n)):
        weights = torch.zeros(n, dtype=torch.float64, device=DEVICE)
        weights[rows[0] : rows[1]] = 1.0
        whole = loss_and_grads(student, teacher, weights, **options)
        part = loss_and_grads(student, teacher, rows=rows, chunk_rows=4, **options)
        torch.testing.assert_close(part[0], first[0][rows[0] : rows[1]], rtol=1e-12, atol=1e-14)
        for a, b in zip(part[1], whole[1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_tiny_workspace_still_processes_one_row_per_tile(monkeypatch) -> None:
    """A one-byte workspace for the dense torch stage: tiles of one row, still the reference's loss."""
    monkeypatch.setenv("PC_KERNELS_TORCH_WORKSPACE_BYTES", "1")
    student, teacher = random_features(N, 4, seed=18), random_features(N, 4, seed=19)
    criterion = pc_kernels.PerceptionCoherenceLoss(backend="torch")
    torch.testing.assert_close(
        criterion(student, teacher),
        pc_kernels.perception_coherence_loss(student, teacher, backend="reference"),
        rtol=1e-10,
        atol=1e-12,
    )
    assert criterion.last_plan.tile_rows == 1 and criterion.last_plan.rank_stage == "dense"


TORCH_PATHS = [path for path in FAST_PATHS if path.backend == "torch"]


@pytest.mark.parametrize("path", TORCH_PATHS, ids=str)
@pytest.mark.parametrize("options", OPTION_GRID, ids=option_id)
def test_plain_torch_loops_on_cpu_match_the_reference(monkeypatch, path: Path, options: dict) -> None:
    """PC_KERNELS_CPU_LOOPS=torch: the torch code of the stages that also have compiled CPU loops (what
    runs on CUDA, or without numba), against the reference as above."""
    monkeypatch.setenv("PC_KERNELS_CPU_LOOPS", "torch")
    student = random_features(N, 5, seed=31).requires_grad_()
    teacher = random_features(N, 4, seed=32).requires_grad_(options["teacher_ranks"] == "soft")
    weights = random_features(16, 1, seed=33)[:, 0]
    common = dict(tau=0.3, reduction="none", rows=(2, 18), **options)
    criterion = pc_kernels.PerceptionCoherenceLoss(chunk_rows=4, **path.options, **common)
    value = criterion(student, teacher)
    assert criterion.last_plan.loops == "torch"
    inputs = [x for x in (student, teacher) if x.requires_grad]
    got = (value.detach(), list(torch.autograd.grad((value * weights).sum(), inputs)))
    assert_agree(path, got, loss_and_grads(student, teacher, weights, backend="reference", **common))
