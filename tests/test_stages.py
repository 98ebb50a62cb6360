"""Unit tests of the pipeline's stages (pc_kernels/stages/), each against an independent formula.

layout.py (candidate layout), distances.py (the distance policy: prepared features, Gram form, snap,
matrix-product backward), dense_ranks.py (tiles and strips), row_scale.py, discrepancy.py and
hard_ranks.py. The binned rank stage has its own file (test_binned.py), the Triton stages theirs
(test_triton_paths.py). Stages with compiled CPU loops (numba_loops.py) are tested with both their
"torch" and "numba" loops (the latter when numba is installed).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from helpers import DISSIMILARITIES, random_features
from pc_kernels import plan, reference
from pc_kernels.stages import dense_ranks as dense_ranks_module
from pc_kernels.stages import distances
from pc_kernels.stages.dense_ranks import dense_ranks, dense_ranks_backward
from pc_kernels.stages.hard_ranks import hard_ranks
from pc_kernels.stages.layout import drop_diagonal, insert_diagonal
from pc_kernels.stages.registry import DISCREPANCIES, ROW_SCALE_STAGES, load

LOOPS = ["torch", "numba"] if plan._NUMBA_INSTALLED else ["torch"]
DISSIMILARITY_STAGES = {"torch": distances.TorchDissimilarity(), "numba": distances.NumbaDissimilarity()}

# ------------------------------------------------------------------------------------------ layout


def _row_scale(tau: float, normalize: str, loops: str = "torch"):
    return load(ROW_SCALE_STAGES[loops])(tau, normalize)


def _scale(d: torch.Tensor, tau: float, normalize: str, exponent: torch.Tensor, loops: str = "torch"):
    """The row scale of candidate rows d, from their statistics."""
    stage = _row_scale(tau, normalize, loops)
    return stage.scale(stage.statistics(d), exponent, d.dtype)


def _candidates_by_mask(square: torch.Tensor, start: int, end: int) -> torch.Tensor:
    n = square.shape[0]
    rows = torch.arange(start, end)
    keep = rows[:, None] != torch.arange(n)[None, :]
    return square[start:end][keep].view(end - start, n - 1)


@pytest.mark.parametrize("n", [3, 4, 9])
def test_layout_drop_and_insert_diagonal_round_trip_for_every_block(n: int) -> None:
    square = random_features(n, n, seed=n)
    for start in range(n):
        for end in range(start + 1, n + 1):
            block = square[start:end]
            candidates = drop_diagonal(block, start)
            assert torch.equal(candidates, _candidates_by_mask(square, start, end))
            back = insert_diagonal(candidates, start)
            expected = block.clone()
            expected[torch.arange(end - start), torch.arange(start, end)] = 0.0
            assert torch.equal(back, expected)


def test_layout_keeps_dtype_and_copies() -> None:
    square = random_features(5, 5, seed=1, dtype=torch.float32)
    candidates = drop_diagonal(square[1:4], 1)
    assert candidates.dtype == torch.float32 and candidates.shape == (3, 4)
    candidates.zero_()
    assert square.abs().sum() > 0  # a new tensor, not a view of the input


# ------------------------------------------------------------------------------- distance policy


def _reference_rows(x: torch.Tensor, kind: str, start: int, end: int) -> torch.Tensor:
    """Candidate rows of the reference backend's (n, n) dissimilarities (coordinate differences)."""
    return drop_diagonal(reference.pairwise_dissimilarity(x, kind)[start:end], start)


def _in_input_units(prepared: distances.PreparedFeatures, d: torch.Tensor) -> torch.Tensor:
    return torch.ldexp(d.to(torch.float64), prepared.unit_exponent)


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("kind", DISSIMILARITIES)
def test_distance_rows_match_the_reference_in_input_units(kind: str, loops: str) -> None:
    x = random_features(23, 5, seed=2) * 37.0 + 5.0  # neither centred nor of unit scale
    prepared = distances.prepare(x, kind)
    assert prepared.features.dtype == torch.float64
    if kind != "cosine":  # exact power-of-two rescaling into (−1, 1)
        assert prepared.features.abs().max() < 1 and prepared.features.abs().max() >= 0.5
    d = DISSIMILARITY_STAGES[loops].rows(prepared, 4, 11)
    assert d.shape == (7, 22) and d.dtype == torch.float64
    torch.testing.assert_close(_in_input_units(prepared, d), _reference_rows(x, kind, 4, 11), rtol=1e-12, atol=1e-12)
    square = distances.square_matrix(prepared)
    torch.testing.assert_close(
        torch.ldexp(square, prepared.unit_exponent),
        reference.pairwise_dissimilarity(x, kind),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("kind", DISSIMILARITIES)
def test_distance_gradient_matches_autograd_through_the_reference_formula(kind: str, loops: str) -> None:
    x = random_features(23, 5, seed=3)
    x[9] = x[2]  # a duplicate pair inside the block: zero euclidean gradient there
    prepared = distances.prepare(x, kind)
    start, end = 4, 11
    d = DISSIMILARITY_STAGES[loops].rows(prepared, start, end)
    grad_d = random_features(end - start, 22, seed=4)
    out = torch.zeros_like(prepared.features)
    DISSIMILARITY_STAGES[loops].accumulate_gradient(prepared, start, d, grad_d, out)
    # The same derivative by autograd: the reference formula on the prepared features.
    features = prepared.features.clone().requires_grad_()
    rows = _reference_rows(features, kind, start, end)
    (expected,) = torch.autograd.grad(rows, features, grad_d)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


class _CandidateRowsOp(torch.autograd.Function):
    """The dissimilarity stage's rows of prepare(f) as a differentiable op whose backward is accumulate_gradient.

    For features whose largest deviation from the coordinate-wise median lies in [½, 1), prepare() does
    not rescale (exponent 0) and only shifts, which changes no distance: ∂L/∂(prepared features) is
    then ∂L/∂f (the shift's derivative cancels, Σ_i ∂D/∂x_i = 0), so gradcheck perturbs f itself."""

    @staticmethod
    def forward(ctx, f: torch.Tensor, kind: str, start: int, end: int, loops: str) -> torch.Tensor:  # type: ignore[override]
        prepared = distances.prepare(f.detach(), kind)
        assert prepared.exponent.item() == 0
        d = DISSIMILARITY_STAGES[loops].rows(prepared, start, end)
        ctx.prepared, ctx.start, ctx.loops = prepared, start, loops
        ctx.save_for_backward(d)
        return d

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (d,) = ctx.saved_tensors
        out = torch.zeros_like(ctx.prepared.features)
        DISSIMILARITY_STAGES[ctx.loops].accumulate_gradient(ctx.prepared, ctx.start, d, grad, out)
        return out, None, None, None, None


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("kind", DISSIMILARITIES)
@pytest.mark.parametrize("start, end", [(0, 6), (2, 4), (5, 6)])
def test_gradcheck_of_candidate_rows_with_the_shared_backward(kind: str, start: int, end: int, loops: str) -> None:
    f = random_features(6, 3, seed=5)
    f = f / (f - f.median(dim=0).values).abs().max() * 0.75  # largest deviation 0.75: no rescaling
    assert torch.autograd.gradcheck(lambda a: _CandidateRowsOp.apply(a, kind, start, end, loops), (f.requires_grad_(),))


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("kind", ["euclidean", "sqeuclidean"])
def test_duplicates_give_exactly_zero_distance_and_zero_gradient(kind: str, loops: str) -> None:
    x = random_features(5, 4, seed=6, dtype=torch.float32).repeat(2, 1) + 3.0
    prepared = distances.prepare(x, kind)
    square = distances.square_matrix(prepared)
    i = torch.arange(10)
    assert torch.equal(square[i, (i + 5) % 10], torch.zeros(10, dtype=torch.float64))
    assert torch.all(square[~torch.eye(10, dtype=torch.bool) & ((i[:, None] - i[None, :]).abs() != 5)] > 0)
    d = DISSIMILARITY_STAGES[loops].rows(prepared, 0, 10)
    assert torch.equal(d[i, (i + 4) % 9], torch.zeros(10, dtype=torch.float32))  # the pairs (i, i ± 5)
    # ∂L/∂d nonzero only at the duplicate pair (0, 5): euclidean gives it a zero gradient.
    grad_d = torch.zeros(10, 9, dtype=torch.float32)
    grad_d[0, 4] = 1.0
    out = torch.zeros_like(prepared.features)
    DISSIMILARITY_STAGES[loops].accumulate_gradient(prepared, 0, d, grad_d, out)
    if kind == "euclidean":
        assert torch.equal(out, torch.zeros_like(out))
    else:  # ∂‖x_0 − x_5‖² = 2 (x_0 − x_5) = 0 as well
        assert torch.equal(out, torch.zeros_like(out))
    out.zero_()
    DISSIMILARITY_STAGES[loops].accumulate_gradient(prepared, 0, d, torch.ones_like(d), out)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("kind", ["euclidean", "sqeuclidean"])
def test_far_apart_float32_clusters_keep_their_within_cluster_distances(kind: str, loops: str) -> None:
    """Two clusters of unit spread at ±1e4 in float32: a float32 Gram form would read every
    within-cluster distance as 0; the float64 one is exact up to the final float32 rounding."""
    g = torch.Generator().manual_seed(7)
    centres = torch.tensor([[1e4] * 8, [-1e4] * 8], dtype=torch.float64)
    x = (centres[torch.arange(40) % 2] + torch.randn(40, 8, generator=g, dtype=torch.float64)).float()
    prepared = distances.prepare(x, kind)
    d = DISSIMILARITY_STAGES[loops].rows(prepared, 0, 40)
    assert d.dtype == torch.float32
    expected = _reference_rows(x.double(), kind, 0, 40)
    relative = (_in_input_units(prepared, d) - expected).abs() / expected
    # One rounding to float32 is at most 2^-24 relative; allow one ulp (2^-23).
    assert relative.max().item() <= 2.0**-23


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("kind", ["euclidean", "sqeuclidean"])
def test_far_apart_float32_clusters_keep_an_accurate_distance_gradient(kind: str, loops: str) -> None:
    """The backward of the same clusters: x_i·ρ_i − Σ_j W_ij x_j cancels down to the within-cluster
    differences (1e-4 of |x|), so it must not be formed in float32. Against autograd through the
    reference formula in float64 on the same prepared features and float32 inputs d, ∂L/∂d: float32
    rounding of d and ∂L/∂d only (measured: 2e-8 with float64 products; float32 ones give 1e-3 for
    euclidean)."""
    g = torch.Generator().manual_seed(7)
    centres = torch.tensor([[1e4] * 8, [-1e4] * 8], dtype=torch.float64)
    x = (centres[torch.arange(40) % 2] + torch.randn(40, 8, generator=g, dtype=torch.float64)).float()
    prepared = distances.prepare(x, kind)
    d = DISSIMILARITY_STAGES[loops].rows(prepared, 0, 40)
    grad_d = torch.randn(40, 39, generator=g).float()
    out = torch.zeros(prepared.features.shape, dtype=torch.float64)
    DISSIMILARITY_STAGES[loops].accumulate_gradient(prepared, 0, d, grad_d, out)
    features = prepared.features.clone().requires_grad_()
    (expected,) = torch.autograd.grad(_reference_rows(features, kind, 0, 40), features, grad_d.double())
    assert (out - expected).norm() <= 1e-5 * expected.norm()


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("kind", ["euclidean", "sqeuclidean"])
def test_median_shift_keeps_integer_grid_ties_exact(kind: str, loops: str) -> None:
    """Points on an integer grid far from the origin: the median shift moves each coordinate by one of
    its own values (exactly), so the Gram form sees small integers and equal distances stay equal."""
    grid = torch.tensor([[0, 0, 0], [1, 0, 2], [0, 1, 2], [2, 2, 0], [1, 1, 1], [3, 0, 1], [0, 3, 1], [2, 0, 2]])
    x = grid.to(torch.float64) + 2.0**40 + 0.5  # |x| ≈ 1e12: N_i + N_j − 2<x_i, x_j> would be all noise
    prepared = distances.prepare(x, kind)
    d = _in_input_units(prepared, DISSIMILARITY_STAGES[loops].rows(prepared, 0, 8))
    squares = drop_diagonal((grid[:, None] - grid[None, :]).square().sum(dim=2).to(torch.float64), 0)
    assert torch.equal(d, squares if kind == "sqeuclidean" else squares.sqrt())
    assert len(torch.unique(squares)) < squares.numel() // 4  # the data really has ties
    # Hence exact hard ranks (scipy's average ranks of the integer distances).
    expected = np.stack([(rankdata(row, method="average") - 1) / 6 for row in squares.numpy()])
    np.testing.assert_array_equal(hard_ranks(d).numpy(), expected)


def test_cosine_features_are_used_as_they_are() -> None:
    x = random_features(7, 4, seed=8) * 1e-3
    x[2] = 0.0  # a zero row: its norm is clamped to 1e-8
    prepared = distances.prepare(x, "cosine")
    assert torch.equal(prepared.features, x) and prepared.exponent.item() == 0
    assert prepared.norms[2].item() == 1e-8
    torch.testing.assert_close(
        distances.square_matrix(prepared), reference.pairwise_dissimilarity(x, "cosine"), rtol=1e-12, atol=1e-12
    )


def test_non_finite_features_are_zeroed_and_flagged() -> None:
    x = random_features(6, 3, seed=9)
    assert distances.prepare(x, "euclidean").finite.item()
    x[4, 1] = float("nan")
    x[1, 0] = float("inf")
    prepared = distances.prepare(x, "euclidean")
    assert not prepared.finite.item()
    assert torch.isfinite(prepared.features).all() and torch.isfinite(distances.square_matrix(prepared)).all()


# ------------------------------------------------------------------------------ dense rank stage


def _brute_force_ranks(y: torch.Tensor) -> torch.Tensor:
    """R[r, j] = 1/(w−1) Σ_{k != j} σ(y[r, j] − y[r, k]) by a dense (m, w, w) sum."""
    w = y.shape[1]
    return (torch.sigmoid(y[:, :, None] - y[:, None, :]).sum(dim=2) - 0.5) / (w - 1)


@pytest.mark.parametrize("strip", (1, 3, 10, 16))
@pytest.mark.parametrize("tile_rows", (1, 3, 7))
def test_dense_ranks_are_exact_for_any_tile_and_strip(monkeypatch, tile_rows: int, strip: int) -> None:
    monkeypatch.setattr(dense_ranks_module, "strip_width", lambda w: min(strip, w))
    d = random_features(7, 10, seed=10).abs()
    factor = random_features(7, 1, seed=11)[:, 0].abs() + 0.5
    upstream = random_features(7, 10, seed=12)
    y = (factor[:, None] * d).requires_grad_()
    expected = _brute_force_ranks(y)
    torch.testing.assert_close(dense_ranks(d, factor, tile_rows), expected, rtol=1e-12, atol=1e-14)
    (grad_expected,) = torch.autograd.grad(expected, y, upstream)
    got = dense_ranks_backward(d, factor, upstream, tile_rows)
    torch.testing.assert_close(got, grad_expected, rtol=1e-10, atol=1e-13)


def test_strip_width_covers_rows_of_any_width() -> None:
    for w in (2, 15, 16, 17, 255, 256, 257, 4095):
        strip = dense_ranks_module.strip_width(w)
        assert 1 <= strip <= w and (strip >= 16 or strip == w)
        assert -(-w // strip) <= 17  # about 16 strips per row at most


def test_dense_ranks_accept_a_stride_zero_upstream_gradient() -> None:
    d = random_features(5, 8, seed=13)
    factor = torch.full((5,), 2.0, dtype=torch.float64)
    expanded = torch.ones((), dtype=torch.float64).expand(5, 8)
    assert expanded.stride() == (0, 0)
    torch.testing.assert_close(
        dense_ranks_backward(d, factor, expanded, 2), dense_ranks_backward(d, factor, expanded.contiguous(), 2),
        rtol=0, atol=0,
    )  # fmt: skip


def test_dense_ranks_saturate_without_nan_for_huge_factors() -> None:
    d = torch.tensor([[0.0, 1.0, 1.0, 3.0]], dtype=torch.float32)
    factor = torch.tensor([torch.finfo(torch.float32).max])
    ranks = dense_ranks(d, factor, 1)
    # The hard ranks: ties (the two 1.0) count ½ each.
    torch.testing.assert_close(ranks, torch.tensor([[0.0, 0.5, 0.5, 1.0]]), rtol=0, atol=1e-7)
    assert torch.isfinite(dense_ranks_backward(d, factor, torch.ones_like(d), 1)).all()


# ------------------------------------------------------------------------------------- row scale


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("tau", [0.05, 1.0])
def test_row_std_factor_and_backward_match_autograd(tau: float, loops: str) -> None:
    d = random_features(6, 9, seed=14).abs() + 0.1
    grad_y = random_features(6, 9, seed=15)
    scale = _scale(d, tau, "row_std", torch.tensor(3, dtype=torch.int32), loops)
    leaf = d.clone().requires_grad_()
    std = leaf.std(dim=1, correction=0)
    factor = 1.0 / (tau * (std + 1e-12))
    torch.testing.assert_close(scale.factor, factor.detach(), rtol=1e-14, atol=0)
    (expected,) = torch.autograd.grad(factor[:, None] * leaf, leaf, grad_y)
    got = _row_scale(tau, "row_std", loops).backward(d, scale, grad_y)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_no_normalization_factor_is_two_to_the_unit_exponent_over_tau() -> None:
    d = random_features(4, 5, seed=16).abs()
    grad_y = random_features(4, 5, seed=17)
    scale = _scale(d, 0.25, "none", torch.tensor(3, dtype=torch.int32))
    assert torch.equal(scale.factor, torch.full((4,), 32.0, dtype=torch.float64))  # 2³ / 0.25
    torch.testing.assert_close(_row_scale(0.25, "none").backward(d, scale, grad_y), 32.0 * grad_y, rtol=0, atol=0)


@pytest.mark.parametrize("loops", LOOPS)
def test_row_of_equal_values_gets_no_std_term(loops: str) -> None:
    """s = 0: the factor is 1/(τ·1e-12) and only the direct term c·∂L/∂y remains (sqrt has no
    derivative at 0)."""
    d = torch.cat([torch.full((1, 5), 0.7, dtype=torch.float64), random_features(1, 5, seed=18).abs()])
    grad_y = random_features(2, 5, seed=19)
    scale = _scale(d, 0.5, "row_std", torch.tensor(0, dtype=torch.int32), loops)
    assert scale.std[0].item() == 0.0 and scale.factor[0].item() == pytest.approx(2e12)
    grad_d = _row_scale(0.5, "row_std", loops).backward(d, scale, grad_y)
    torch.testing.assert_close(grad_d[0], scale.factor[0] * grad_y[0], rtol=1e-15, atol=0)
    assert torch.isfinite(grad_d).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_factor_is_clamped_into_the_normal_range_with_headroom(dtype: torch.dtype) -> None:
    """Factors are clamped into [4·tiny, max/4] of the computation dtype (tiny τ, huge τ), flagged as
    clamped, and the backward stays finite (no std term for a clamped factor)."""
    info = torch.finfo(dtype)
    d = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0]], dtype=dtype)
    # τ = 5e-324: 1/τ overflows float64. τ = 1e308 on the row of spread 1.1: c below 4·tiny of float64.
    for rows, tau, bound in ((d, 5e-324, info.max / 4), (d[1:], 1e308, 4 * info.tiny)):
        for normalize in ("row_std", "none"):
            scale = _scale(rows, tau, normalize, torch.tensor(0, dtype=torch.int32))
            assert scale.factor.dtype == dtype and torch.all(scale.clamped)
            assert torch.equal(scale.factor, torch.full((rows.shape[0],), bound, dtype=torch.float64).to(dtype))
            assert torch.isfinite(_row_scale(tau, normalize).backward(rows, scale, torch.ones_like(rows))).all()
    assert not _scale(d, 0.1, "row_std", torch.tensor(0, dtype=torch.int32)).clamped[1]


# ----------------------------------------------------------------------------------- discrepancy


@pytest.mark.parametrize("kind", DISCREPANCIES)
def test_discrepancy_and_its_backward_match_the_reference_and_autograd(kind: str) -> None:
    g = torch.Generator().manual_seed(20)
    rs = torch.rand(5, 8, generator=g, dtype=torch.float64).requires_grad_()
    rt = torch.rand(5, 8, generator=g, dtype=torch.float64).requires_grad_()
    grad_losses = torch.randn(5, generator=g, dtype=torch.float64)
    # Forward: the reference backend's square-matrix formula on the same rows (rows 0 … 4 of n = 9).
    square_s, square_t = insert_diagonal(rs.detach(), 0), insert_diagonal(rt.detach(), 0)
    pad = torch.zeros(4, 9, dtype=torch.float64)
    expected = reference._row_discrepancy(torch.cat([square_s, pad]), torch.cat([square_t, pad]), kind)[:5]
    stage = load(DISCREPANCIES[kind])()
    torch.testing.assert_close(stage.losses(rs.detach(), rt.detach()), expected, rtol=1e-13, atol=1e-15)
    expected_s, expected_t = torch.autograd.grad(stage.losses(rs, rt), (rs, rt), grad_losses)
    got_s, got_t = stage.backward(rs.detach(), rt.detach(), grad_losses)
    torch.testing.assert_close(got_s, expected_s, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(got_t, expected_t, rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------------------------ hard ranks


def test_hard_ranks_equal_scipy_average_ranks_with_ties() -> None:
    g = torch.Generator().manual_seed(21)
    d = torch.randint(0, 5, (6, 11), generator=g).to(torch.float64) * 0.3
    d[0] = torch.arange(11, dtype=torch.float64)  # no ties
    d[1] = 1.0  # all tied
    expected = np.stack([(rankdata(row, method="average") - 1) / 10 for row in d.numpy()])
    got = hard_ranks(d.requires_grad_())
    assert not got.requires_grad
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-15)
    assert torch.equal(got[1], torch.full((11,), 0.5, dtype=torch.float64))


# ------------------------------------------------------------------------------------------ threads


@pytest.mark.skipif(len(LOOPS) < 2, reason="numba is not installed")
@pytest.mark.parametrize("threads", [1, 2])
def test_numba_loops_run_on_torchs_thread_count_and_restore_numbas(monkeypatch, threads) -> None:
    """torch.set_num_threads governs the compiled loops too (one thread: the serial compilation, no numba
    thread team); numba's own setting is left as it was; the result does not depend on the threads."""
    import numba

    import pc_kernels

    settings: list[int] = []
    set_num_threads = numba.set_num_threads
    monkeypatch.setattr(numba, "set_num_threads", lambda k: (settings.append(k), set_num_threads(k))[1])
    s, t = random_features(40, 5, seed=0).requires_grad_(), random_features(40, 6, seed=1)
    numba_threads, torch_threads = numba.get_num_threads(), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        loss = pc_kernels.perception_coherence_loss(s, t, backend="torch", algorithm="binned")
        (gradient,) = torch.autograd.grad(loss, s)
    finally:
        torch.set_num_threads(torch_threads)
    if threads == 1:
        assert settings == []
    else:
        assert settings, "no compiled loop ran"
        assert settings[0::2] == [min(threads, numba.config.NUMBA_NUM_THREADS)] * (len(settings) // 2)
        assert settings[1::2] == [numba_threads] * (len(settings) // 2)
    assert numba.get_num_threads() == numba_threads
    monkeypatch.setattr(pc_kernels.plan, "_NUMBA_INSTALLED", False)
    expected = pc_kernels.perception_coherence_loss(s, t, backend="torch", algorithm="binned")
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(gradient, torch.autograd.grad(expected, s)[0], rtol=1e-10, atol=1e-14)
