"""The Triton paths (backend="triton", algorithm "dense" and "binned"): the Triton stages themselves,
several rank tiles per row, float32 precision, half precision and autocast, layouts and determinism,
rank and dissimilarity matrix gradients.

Without a GPU the kernels run under the Triton interpreter on CPU tensors (conftest.py sets
TRITON_INTERPRET=1); with one, the same tests run the compiled kernels on CUDA tensors. Sizes stay
small (n <= 40) because the interpreter costs about 0.1 s per launch; they are never multiples of the
tiles (16 for the distance kernel and a power of two >= w for the rank kernel under the interpreter,
64 on a GPU), and ``small_rank_tiles`` forces several rank tiles per row to exercise the tile loop.
"""

from __future__ import annotations

import pytest
import torch

import pc_kernels
from helpers import DEVICE, DISSIMILARITIES, cosine, loss_and_grads, random_features, usable_paths
from pc_kernels.stages import distances
from pc_kernels.stages.dense_ranks import dense_ranks, dense_ranks_backward

TRITON_PATHS = [path for path in usable_paths() if path.backend == "triton"]
if not TRITON_PATHS:
    pytest.skip("the Triton paths need CUDA or the Triton interpreter (TRITON_INTERPRET=1)", allow_module_level=True)

import triton  # noqa: E402

from pc_kernels.kernels import launch  # noqa: E402  (imports triton)
from pc_kernels.stages.triton_distances import TritonDissimilarity  # noqa: E402
from pc_kernels.stages.triton_ranks import triton_ranks, triton_ranks_backward  # noqa: E402

DENSE = [path for path in TRITON_PATHS if path.exact]


def _features(n: int, p: int, q: int, seed: int, dtype: torch.dtype = torch.float64):
    student = random_features(n, p, seed=seed, dtype=dtype).to(DEVICE).requires_grad_()
    teacher = random_features(n, q, seed=seed + 1, dtype=dtype).to(DEVICE).requires_grad_()
    return student, teacher


def _assert_agree(path, student, teacher, rtol: float, atol: float, **options) -> None:
    """Per-row losses and the gradients of Σ_i w_i ℓ_i against the reference: within rtol/atol for the
    dense path, within the binned tolerances (test_paths_agree.py) for the binned one."""
    n = student.shape[0]
    weights = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(7)).to(DEVICE)
    if options.get("rows") is not None:
        weights = weights[options["rows"][0] : options["rows"][1]]
    weights = weights.to(student.dtype)
    got = loss_and_grads(student, teacher, weights, reduction="none", **path.options, **options)
    want = loss_and_grads(student, teacher, weights, reduction="none", backend="reference", **options)
    if path.exact:
        torch.testing.assert_close(got[0], want[0], rtol=rtol, atol=atol)
        for g, w in zip(got[1], want[1], strict=True):
            torch.testing.assert_close(g, w, rtol=rtol, atol=atol)
        return
    assert torch.all((got[0] - want[0]).abs() <= 1e-4 * want[0].abs() + atol)
    for g, w in zip(got[1], want[1], strict=True):
        if w.norm() <= 1e-12:  # zero up to rounding (spearman at n = 3: ρ = ±1 whatever the features)
            assert g.norm() <= 1e-12
            continue
        assert cosine(g, w) >= 0.9999 and (g - w).norm() <= 1e-3 * w.norm()


@pytest.fixture
def small_rank_tiles(monkeypatch):
    """Rank tiles of 8 candidates under the interpreter (on a GPU they are 64 wide: use n > 64 there)."""
    monkeypatch.setattr(launch, "INTERPRETER_RANK_BLOCK", 8)
    return 19 if DEVICE == "cpu" else 150


# ------------------------------------------------------------------------------------- the stages


@pytest.mark.parametrize("w", [2, 13, 20])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_rank_stage_matches_the_dense_torch_stage(w: int, dtype: torch.dtype) -> None:
    d = random_features(5, w, seed=w, dtype=dtype).abs().to(DEVICE)
    factor = (random_features(5, 1, seed=1, dtype=dtype)[:, 0].abs() + 0.5).to(DEVICE)
    g = random_features(5, w, seed=2, dtype=dtype).to(DEVICE)
    tolerance = dict(rtol=1e-12, atol=1e-14) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(triton_ranks(d, factor, False), dense_ranks(d, factor, 5), **tolerance)
    torch.testing.assert_close(
        triton_ranks_backward(d, factor, g, False), dense_ranks_backward(d, factor, g, 5), **tolerance
    )


def test_triton_rank_stage_with_several_tiles_per_row(small_rank_tiles) -> None:
    w = small_rank_tiles + 2
    d = random_features(3, w, seed=3).abs().to(DEVICE)
    assert launch.rank_launch(d, w).block_j < w  # really several tiles (with a tail) per row
    factor = torch.tensor([0.5, 2.0, 9.0], dtype=torch.float64, device=DEVICE)
    g = random_features(3, w, seed=4).to(DEVICE)
    torch.testing.assert_close(triton_ranks(d, factor, False), dense_ranks(d, factor, 3), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(
        triton_ranks_backward(d, factor, g, False), dense_ranks_backward(d, factor, g, 3), rtol=1e-12, atol=1e-14
    )


def _mixed_rows() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 rows of 13 candidates, their factors and ∂L/∂R, and which rows are within the separable form's
    spread: c·log2(e)·(max − min) of 0.8, 11, 180, 240 (within 248), 255, 3e3 (beyond), a row of equal values
    (within), a NaN, an infinity (beyond)."""
    g = torch.Generator().manual_seed(91)
    d = torch.rand(9, 13, generator=g, dtype=torch.float64).float()
    d[:, 0], d[:, 1] = 0.0, 1.0  # every row spans [0, 1]
    factor = torch.tensor([0.55, 7.6, 125.0, 166.0, 177.0, 2e3, 1.0, 1.0, 1.0]).float()
    d[6] = 0.25
    d[7, 5] = torch.nan
    d[8, 3] = torch.inf
    within = torch.tensor([True, True, True, True, False, False, True, False, False])
    grad = torch.randn(9, 13, generator=g, dtype=torch.float64).float()
    return d.to(DEVICE), factor.to(DEVICE), grad.to(DEVICE), within


def test_separable_rows_are_those_within_the_spread() -> None:
    from pc_kernels.kernels.separable import SPREAD_LIMIT, separable_rows

    d, factor, _, within = _mixed_rows()
    spread = factor.double() * 1.4426950408889634 * (d.double().amax(dim=1) - d.double().amin(dim=1))
    assert torch.equal(within, (spread <= SPREAD_LIMIT).cpu())  # the rows chosen above straddle the limit
    separable, a, b = separable_rows(d, factor)
    assert separable.dtype == torch.int8 and torch.equal(separable.cpu().bool(), within)
    # A_j·B_j = 1 up to the two roundings (each factor within half an ulp of its float64 value).
    assert ((a * b).double() - 1).abs()[within.to(DEVICE)].max() <= 2 * 2.0**-24 * (1 + 1e-6)


# A row holding ±inf meets inf − inf in the interpreter's numpy arithmetic, which warns; on the GPU it is the
# silent NaN that sends the row to the per-pair form.
INFINITE_ROWS = pytest.mark.filterwarnings(
    "ignore:invalid value encountered in subtract:RuntimeWarning:triton.runtime.interpreter"
)


@INFINITE_ROWS
def test_float32_rows_of_both_forms_match_the_float64_stage() -> None:
    """Rows within the separable form's spread and beyond it, in one launch: ranks and rank gradient within
    float32 rounding of the float64 torch stage (measured: 7e-8 absolute, 2e-7 relative to the row's largest value);
    a NaN gives NaN, an infinity what the per-pair form gives (spec: NaN in, NaN out, ±inf to their limits)."""
    d, factor, grad, _ = _mixed_rows()
    want = dense_ranks(d.double(), factor.double(), 9)
    want_grad = dense_ranks_backward(d.double(), factor.double(), grad.double(), 9)
    got, got_grad = triton_ranks(d, factor, False).double(), triton_ranks_backward(d, factor, grad, False).double()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6, equal_nan=True)
    scale = want_grad.abs().nan_to_num().amax(dim=1, keepdim=True).clamp_min(1e-30)
    torch.testing.assert_close(got_grad / scale, want_grad / scale, rtol=0, atol=1e-6, equal_nan=True)
    assert got[7].isnan().all() and got_grad[7].isnan().all()


@INFINITE_ROWS
def test_separable_form_takes_only_its_rows_and_a_row_is_the_same_in_any_block() -> None:
    """The separable launch alone writes exactly the rows within the spread; a block of rows gives bitwise the
    same ranks and gradient for each row as the whole batch (the form is chosen per row, from the row alone)."""
    from pc_kernels.kernels.separable import separable_rows
    from pc_kernels.kernels.soft_rank import _soft_rank_fwd_kernel

    d, factor, grad, within = _mixed_rows()
    separable, a, b = separable_rows(d, factor)
    ranks = torch.full_like(d, torch.nan)
    block = launch.rank_launch(d, 13)
    _soft_rank_fwd_kernel[(9, triton.cdiv(13, block.block_j))](
        d, factor, separable, a, b, ranks, 13, FAST=False, SEPARABLE=True, BLOCK_J=block.block_j,
        BLOCK_K=block.block_k, num_warps=block.num_warps,
    )  # fmt: skip
    assert torch.equal(ranks.isfinite().all(dim=1).cpu(), within) and ranks[~within.to(DEVICE)].isnan().all()
    whole = (triton_ranks(d, factor, False), triton_ranks_backward(d, factor, grad, False))
    for rows in (slice(2, 6), slice(4, 5)):
        part = (
            triton_ranks(d[rows], factor[rows], False),
            triton_ranks_backward(d[rows], factor[rows], grad[rows], False),
        )
        for p, w in zip(part, whole, strict=True):
            assert torch.equal(p.nan_to_num(), w[rows].nan_to_num())


@pytest.mark.parametrize("kind", DISSIMILARITIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("start, end", [(0, 21), (3, 20), (20, 21)])
def test_triton_dissimilarity_stage_matches_the_torch_stage(
    kind: str, dtype: torch.dtype, start: int, end: int
) -> None:
    x = (random_features(21, 19, seed=5, dtype=dtype) * 3.0 + 1.0).to(DEVICE)
    x[9] = x[2]
    prepared = distances.prepare(x, kind)
    got = TritonDissimilarity().rows(prepared, start, end)
    want = distances.TorchDissimilarity().rows(prepared, start, end)
    assert got.dtype == dtype and got.shape == (end - start, 20)
    # The same float64 Gram form, summed in another order: float64 rounding, then one rounding to dtype.
    tolerance = dict(rtol=1e-12, atol=1e-13) if dtype == torch.float64 else dict(rtol=2**-23, atol=1e-12)
    torch.testing.assert_close(got, want, **tolerance)
    if kind != "cosine" and start <= 2 < end:
        assert got[2 - start, 8] == 0  # the duplicate pair (2, 9) snaps to exactly 0


# --------------------------------------------------------------------------- paths end to end


@pytest.mark.parametrize("path", DENSE, ids=str)
@pytest.mark.parametrize("dissimilarity", ["euclidean", "cosine"])
def test_several_tiles_per_row_match_the_reference(small_rank_tiles, path, dissimilarity: str) -> None:
    student, teacher = _features(small_rank_tiles, 17, 3, seed=3)
    _assert_agree(path, student, teacher, 1e-9, 1e-11, dissimilarity=dissimilarity, discrepancy="spearman")


@pytest.mark.parametrize("path", DENSE, ids=str)
def test_row_subset_with_spearman_and_hard_teacher_over_several_tiles(small_rank_tiles, path) -> None:
    student, teacher = _features(small_rank_tiles, 5, 6, seed=12)
    _assert_agree(path, student, teacher, 1e-9, 1e-11, rows=(5, 14), discrepancy="spearman", teacher_ranks="hard")


@pytest.mark.parametrize("path", TRITON_PATHS, ids=str)
@pytest.mark.parametrize("n, p, q", [(3, 1, 2), (37, 11, 5)])
def test_extreme_sizes_match_the_reference(path, n: int, p: int, q: int) -> None:
    student, teacher = _features(n, p, q, seed=n)
    _assert_agree(path, student, teacher, 1e-9, 1e-11, discrepancy="spearman")


@pytest.mark.parametrize("path", TRITON_PATHS, ids=str)
def test_float32_matches_the_float64_reference(path) -> None:
    student, teacher = _features(33, 40, 23, seed=5, dtype=torch.float32)
    # float32 rounding of distances and ranks, amplified by 1/τ = 5 in the gradient.
    _assert_agree(path, student, teacher, 1e-4, 1e-5, tau=0.2)


@pytest.mark.parametrize("kind", DISSIMILARITIES)
def test_float32_dissimilarities_are_the_rounded_float64_ones_and_duplicates_exactly_zero(kind: str) -> None:
    """The float64 Gram form: every float32 entry within one ulp (2^-23 relative) of the float64 value
    (cosine: plus float64 cancellation of 1 − cos, 1e-12); a duplicate pair is exactly 0."""
    x = random_features(37, 29, seed=61, dtype=torch.float32).to(DEVICE) + 3.0
    x[20] = x[5]
    got = pc_kernels.pairwise_dissimilarity(x, kind, backend="triton")
    want = pc_kernels.pairwise_dissimilarity(x.double(), kind, backend="reference")
    torch.testing.assert_close(got.double(), want, rtol=2**-23, atol=1e-12 if kind == "cosine" else 0)
    if kind != "cosine":
        assert got[5, 20] == 0 and got[20, 5] == 0


@pytest.mark.parametrize("path", TRITON_PATHS, ids=str)
def test_far_apart_float32_clusters_keep_their_within_cluster_distances(path) -> None:
    """Two clusters of unit spread at ±1e4, float32 (n = 40, p = 32). The old float32 Gram kernel read
    every within-cluster distance as 0 and its gradient was off by 60 % (a documented limitation);
    the float64 Gram form keeps each distance within one float32 ulp, and the loss and gradient within
    float32 rounding of the float64 reference."""
    g = torch.Generator().manual_seed(8)
    centres = torch.tensor([[1e4] * 32, [-1e4] * 32], dtype=torch.float64)
    x64 = centres[torch.arange(40) % 2] + torch.randn(40, 32, generator=g, dtype=torch.float64)
    x = x64.float().to(DEVICE)
    got = pc_kernels.pairwise_dissimilarity(x, backend="triton").double()
    want = pc_kernels.pairwise_dissimilarity(x.double(), backend="reference")
    off = ~torch.eye(40, dtype=torch.bool, device=DEVICE)
    within = off & (torch.arange(40, device=DEVICE)[:, None] % 2 == torch.arange(40, device=DEVICE)[None, :] % 2)
    assert torch.all(want[within] > 1.0) and torch.all(want[within] < 20.0)  # tiny next to |x| ≈ 5.7e4
    assert torch.all(((got - want).abs() / want)[off] <= 2**-23)
    student = x.clone().requires_grad_()
    teacher = torch.randn(40, 8, generator=g).to(DEVICE)
    value, (grad,) = loss_and_grads(student, teacher, **path.options)
    want_value, (want_grad,) = loss_and_grads(x.double().requires_grad_(), teacher.double(), backend="reference")
    if path.exact:
        # float32 distances and ranks (measured: 5e-8 on the loss, 1.3e-7 on the gradient).
        assert abs(value.item() - want_value.item()) <= 1e-6 * want_value.item()
        assert (grad.double() - want_grad).norm() <= 1e-5 * want_grad.norm()
    else:
        assert abs(value.item() - want_value.item()) <= 1e-4 * want_value.item()
        assert cosine(grad, want_grad) >= 0.9999 and (grad.double() - want_grad).norm() <= 1e-3 * want_grad.norm()


@pytest.mark.parametrize("path", TRITON_PATHS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(path, dtype: torch.dtype) -> None:
    student, teacher = _features(17, 12, 8, seed=31, dtype=dtype)
    loss = pc_kernels.perception_coherence_loss(student, teacher, **path.options)
    loss.backward()
    want = pc_kernels.perception_coherence_loss(student.double(), teacher.double(), backend="reference")
    assert loss.dtype == torch.float32 and student.grad.dtype == dtype
    # float32 computation (dense: 1e-5); binned: its 1e-4 relative bound.
    rtol = 1e-5 if path.exact else 1e-4
    torch.testing.assert_close(loss.double(), want.detach(), rtol=rtol, atol=1e-6)
    assert torch.isfinite(student.grad.float()).all() and torch.isfinite(teacher.grad.float()).all()


@pytest.mark.parametrize("path", TRITON_PATHS, ids=str)
def test_autocast_region_matches_a_plain_call(path) -> None:
    student, teacher = _features(9, 6, 4, seed=32, dtype=torch.float32)
    plain = pc_kernels.perception_coherence_loss(student, teacher, **path.options)
    with torch.autocast(device_type=DEVICE, dtype=torch.bfloat16):
        inside = pc_kernels.perception_coherence_loss(student, teacher, **path.options)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, plain, rtol=0, atol=0)


@pytest.mark.parametrize("path", TRITON_PATHS, ids=str)
def test_layouts_inputs_untouched_and_deterministic(path) -> None:
    """Transposed features, an expanded upstream gradient (reduction="none" then .sum()), no writes to
    the inputs, and bitwise-identical gradients on a second run."""
    student = random_features(8, 17, seed=41).to(DEVICE).T.requires_grad_()
    teacher = random_features(6, 17, seed=42).to(DEVICE).T.requires_grad_()
    before = (student.detach().clone(), teacher.detach().clone())
    runs = [loss_and_grads(student, teacher, reduction="none", **path.options) for _ in range(2)]
    assert torch.equal(student.detach(), before[0]) and torch.equal(teacher.detach(), before[1])
    assert torch.equal(runs[0][0], runs[1][0]) and all(
        torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True)
    )
    _assert_agree(path, student, teacher, 1e-9, 1e-11)


@pytest.mark.parametrize("path", TRITON_PATHS, ids=str)
def test_duplicate_rows_tiny_tau_and_large_norms_stay_finite(path) -> None:
    student = random_features(9, 5, seed=51).to(DEVICE) * 1e4
    student[3] = student[1]
    teacher = random_features(9, 4, seed=52).to(DEVICE)
    teacher[7] = teacher[2]
    student.requires_grad_()
    teacher.requires_grad_()
    _assert_agree(path, student, teacher, 1e-8, 1e-10)
    value, grads = loss_and_grads(student, teacher, tau=1e-4, **path.options)
    assert torch.isfinite(value) and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("path", TRITON_PATHS, ids=str)
@pytest.mark.parametrize("hard", [False, True])
def test_rank_matrix_and_its_gradient(small_rank_tiles, path, hard: bool) -> None:
    n = small_rank_tiles - 6
    x = random_features(n, 6, seed=71).to(DEVICE).requires_grad_()
    weights = random_features(n, n, seed=72).to(DEVICE)
    got = pc_kernels.soft_ranks(x, tau=0.2, hard=hard, **path.options)
    want = pc_kernels.soft_ranks(x, tau=0.2, hard=hard, backend="reference")
    if hard or path.exact:
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    else:
        assert (got - want).abs().max() <= 1e-5  # RANK_TOLERANCE
    if hard:
        assert not got.requires_grad
        return
    (got_grad,) = torch.autograd.grad((got * weights).sum(), x)
    (want_grad,) = torch.autograd.grad((want * weights).sum(), x)
    if path.exact:
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-9, atol=1e-11)
    else:
        assert cosine(got_grad, want_grad) >= 0.9999 and (got_grad - want_grad).norm() <= 1e-3 * want_grad.norm()


def test_dissimilarity_matrix_and_its_gradient_for_every_kind() -> None:
    x = random_features(21, 19, seed=81).to(DEVICE).requires_grad_()
    weights = random_features(21, 21, seed=82).to(DEVICE)
    for kind in DISSIMILARITIES:
        got = pc_kernels.pairwise_dissimilarity(x, kind, backend="triton")
        want = pc_kernels.pairwise_dissimilarity(x, kind, backend="reference")
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        (got_grad,) = torch.autograd.grad((got * weights).sum(), x)
        (want_grad,) = torch.autograd.grad((want * weights).sum(), x)
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-10, atol=1e-12)
