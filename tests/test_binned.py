"""algorithm="binned": the binned rank stage against the dense one, and the binned paths end to end.

The rank stage works in units of τ: rows of candidate dissimilarities d (m, w) with a per-row factor c
give the points y = c·d (c = 1/τ here unless said otherwise). The documented bounds
(pc_kernels/stages/binned_ranks.py), h the grid spacing in units of τ:
- normalized soft ranks within RANK_ERROR_CONSTANT·h⁴·w/(w − 1) of the dense ones (RANK_TOLERANCE =
  1e-5 with the automatic grid, h = automatic_spacing(w));
- ∂L/∂y_j within (|G_j| + max_k |G_k|)·SLOPE_ERROR_CONSTANT·h⁴·w/(w − 1), G = ∂L/∂R.
Gaps wider than SATURATION (units of τ) are shortened to SATURATION, so an outlier costs at most
SATURATION/h nodes. The stage is tested with its "torch", (numba installed) "numba" and (CUDA or the
Triton interpreter) "triton" grid passes, the last on the test device. The
binned paths' loss and gradients against the reference and the dense paths over the option grid are in
test_paths_agree.py.
"""

from __future__ import annotations

import math

import pytest
import torch

import pc_kernels
from helpers import DEVICE, OPTION_GRID, cosine, loss_and_grads, random_features, usable_paths
from pc_kernels import plan as plan_module
from pc_kernels.stages import binned_ranks as binned
from pc_kernels.stages import distances
from pc_kernels.stages.dense_ranks import dense_ranks, dense_ranks_backward

TAUS = (0.01, 0.03, 0.1, 0.3, 1.0)
BINNED_PATHS = [path for path in usable_paths() if path.algorithm == "binned"]
LOOPS = [
    "torch",
    *(["numba"] if plan_module._NUMBA_INSTALLED else []),
    *(["triton"] if "triton" in pc_kernels.available_backends(DEVICE) else []),
]
GRIDS: dict[str, type[binned.Grid]] = {"torch": binned.Grid, "numba": binned.NumbaGrid}
if "triton" in LOOPS:
    from pc_kernels.stages.triton_binned_ranks import TritonGrid

    GRIDS["triton"] = TritonGrid


def _rows(kind: str, m: int, w: int, seed: int) -> torch.Tensor:
    """(m, w) float64 dissimilarity-like rows of one shape family."""
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        rows = torch.randn(m, w, generator=g, dtype=torch.float64).abs() * 2.0
    elif kind == "clusters":
        centres = torch.rand(m, 10, generator=g, dtype=torch.float64) * 6.0
        pick = torch.randint(0, 10, (m, w), generator=g)
        rows = centres.gather(1, pick) + 0.02 * torch.randn(m, w, generator=g, dtype=torch.float64)
    elif kind == "outliers":
        rows = torch.randn(m, w, generator=g, dtype=torch.float64).abs()
        rows[:, :3] = torch.tensor([40.0, 300.0, 5000.0], dtype=torch.float64)
    else:  # ties: few distinct values, each repeated many times
        rows = torch.randint(0, 6, (m, w), generator=g).to(torch.float64) * 0.37
    return rows


def _factor(d: torch.Tensor, tau: float) -> torch.Tensor:
    return torch.full((d.shape[0],), 1.0 / tau, dtype=d.dtype)


def _device(loops: str) -> str:
    """Where a stage with these grid passes runs: the Triton kernels on the test device, the others on CPU."""
    return DEVICE if loops == "triton" else "cpu"


def _ranks(d: torch.Tensor, c: torch.Tensor, bins: int | None, loops: str) -> torch.Tensor:
    """Soft ranks of the loops' grid on the loops' device, returned on CPU."""
    device = _device(loops)
    return GRIDS[loops](d.to(device), c.to(device), bins).ranks().cpu()


def _rank_gradient(d: torch.Tensor, c: torch.Tensor, g: torch.Tensor, bins: int | None, loops: str) -> torch.Tensor:
    """The rank gradient of the loops' grid on the loops' device, returned on CPU."""
    device = _device(loops)
    return GRIDS[loops](d.to(device), c.to(device), bins).rank_gradient(g.to(device)).cpu()


def _per_pair_to_row(w: int) -> float:
    """A row's sum has w pair terms (its own included) over w − 1."""
    return w / (w - 1)


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("kind", ["gaussian", "clusters", "outliers", "ties"])
def test_ranks_and_rank_gradient_within_documented_bounds(kind: str, tau: float, loops: str) -> None:
    d = _rows(kind, 6, 301, seed=int(tau * 1000))
    c = _factor(d, tau)
    g = torch.randn(d.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    approx = _ranks(d, c, None, loops)
    assert (approx - dense_ranks(d, c, 6)).abs().max().item() <= binned.RANK_TOLERANCE
    grad_dense = dense_ranks_backward(d, c, g, 6)
    grad_binned = _rank_gradient(d, c, g, None, loops)
    h = binned.automatic_spacing(301)
    bound = (g.abs() + g.abs().amax(dim=1, keepdim=True)) * binned.SLOPE_ERROR_CONSTANT * h**4 * _per_pair_to_row(301)
    assert torch.all((grad_binned - grad_dense).abs() <= bound + 1e-12)  # 1e-12: float64 rounding of the sums
    assert cosine(grad_binned, grad_dense) >= 0.9999


@pytest.mark.parametrize("w", [2, 3, 300, 10**5])
def test_the_automatic_spacing_meets_the_tolerance(w: int) -> None:
    h = binned.automatic_spacing(w)
    assert binned.RANK_ERROR_CONSTANT * h**4 * _per_pair_to_row(w) == pytest.approx(binned.RANK_TOLERANCE, rel=1e-12)
    # (27/512)·max|σ| and (27/512)·max|σ'|, from the cubic Lagrange remainder (module docstring).
    z = torch.linspace(-8, 8, 200001, dtype=torch.float64)
    s = torch.sigmoid(z)
    fourth = s * (1 - s) * (1 - 2 * s) * (1 - 12 * s + 12 * s * s)
    assert pytest.approx(27 / 512 * fourth.abs().max().item(), rel=1e-6) == binned.RANK_ERROR_CONSTANT
    assert pytest.approx(27 / 512 * 0.25, rel=1e-12) == binned.SLOPE_ERROR_CONSTANT


@pytest.mark.parametrize("loops", LOOPS)
def test_ranks_depend_only_on_the_points_in_units_of_tau(loops: str) -> None:
    """(d, c) and (2d, c/2) are the same points y = c·d: the same ranks and ∂L/∂y."""
    d = _rows("gaussian", 3, 50, seed=4)
    c = _factor(d, 0.1)
    g = random_features(3, 50, seed=5)
    torch.testing.assert_close(_ranks(2 * d, c / 2, None, loops), _ranks(d, c, None, loops), rtol=0, atol=1e-15)
    torch.testing.assert_close(
        _rank_gradient(2 * d, c / 2, g, None, loops), _rank_gradient(d, c, g, None, loops),
        rtol=0, atol=1e-15,
    )  # fmt: skip


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("tau", (0.03, 0.3))
def test_error_shrinks_as_bins_grow_and_meets_the_bound(tau: float, loops: str) -> None:
    d = _rows("clusters", 4, 257, seed=11)
    c = _factor(d, tau)
    dense = dense_ranks(d, c, 4)
    errors = []
    for bins in (64, 256, 1024, 4096):
        grid = GRIDS[loops](d, c, bins)
        assert grid.nodes == bins + 2  # one margin node on each side for the cubic basis
        error = (_ranks(d, c, bins, loops) - dense).abs().amax(dim=1)
        bound = binned.RANK_ERROR_CONSTANT * grid.spacing**4 * _per_pair_to_row(257)  # per row, h of that row
        assert torch.all(error <= bound)
        errors.append(error.max().item())
    # h shrinks 4× per step: the h⁴ bound 256×; ask for 64× (more than a third-order scheme gives).
    assert all(later < earlier / 64 for earlier, later in zip(errors, errors[1:], strict=False))


@pytest.mark.parametrize("loops", LOOPS)
def test_outliers_cost_at_most_saturation_each(loops: str) -> None:
    """Gaps wider than SATURATION (units of τ) are shortened to SATURATION: the grid spans each row's
    bulk plus at most SATURATION per outlier, not the outliers' distance."""
    tau = 0.1
    d = _rows("outliers", 3, 200, seed=5)
    c = _factor(d, tau)
    h = binned.automatic_spacing(200)
    grid = GRIDS[loops](d, c, None)
    bulk = ((d[:, 3:].amax(dim=1) - d[:, 3:].amin(dim=1)) / tau).max().item()
    # Interior nodes ceil(spread/h) + 1, plus the two margin nodes.
    assert grid.nodes <= math.ceil((bulk + 3 * binned.SATURATION) / h) + 3
    assert grid.nodes < (5000 / tau) / h / 100
    dense = dense_ranks(d, c, 3)
    assert (_ranks(d, c, None, loops) - dense).abs().max().item() <= binned.RANK_TOLERANCE
    coarse = GRIDS[loops](d, c, 128)
    # The 128 nodes span the closed rows: about (bulk + 3·SATURATION)/127 apart, not 5000/τ/127.
    assert coarse.spacing.max().item() <= (bulk + 3 * binned.SATURATION) / 127 + 1e-12
    error = (_ranks(d, c, 128, loops) - dense).abs().amax(dim=1)
    assert torch.all(error <= binned.RANK_ERROR_CONSTANT * coarse.spacing**4 * _per_pair_to_row(200))


@pytest.mark.parametrize("loops", LOOPS)
def test_equal_and_tiny_rows_are_finite(loops: str) -> None:
    d = torch.zeros(3, 10, dtype=torch.float64)
    c = torch.full((3,), 1e4, dtype=torch.float64)
    torch.testing.assert_close(_ranks(d, c, None, loops), torch.full_like(d, 0.5), rtol=0, atol=1e-15)
    assert torch.isfinite(_rank_gradient(d, c, torch.ones_like(d), None, loops)).all()
    pair = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    c = torch.tensor([10.0], dtype=torch.float64)
    dense = dense_ranks(pair, c, 1)
    torch.testing.assert_close(_ranks(pair, c, None, loops), dense, rtol=0, atol=binned.RANK_TOLERANCE)


@pytest.mark.parametrize("loops", LOOPS)
def test_deposits_are_order_independent(loops: str) -> None:
    """int64 fixed-point deposits: permuting a row's candidates permutes its results bitwise."""
    d = _rows("clusters", 2, 120, seed=6)
    c = _factor(d, 0.05)
    g = random_features(2, 120, seed=7)
    perm = torch.randperm(120, generator=torch.Generator().manual_seed(8))
    assert torch.equal(_ranks(d[:, perm], c, None, loops), _ranks(d, c, None, loops)[:, perm])
    assert torch.equal(
        _rank_gradient(d[:, perm], c, g[:, perm], None, loops),
        _rank_gradient(d, c, g, None, loops)[:, perm],
    )


@pytest.mark.parametrize("loops", [loops for loops in LOOPS if loops != "torch"])
@pytest.mark.parametrize("bins", [None, 300])
def test_compiled_grid_passes_compute_what_the_torch_loops_compute(bins, loops: str) -> None:
    """Same operations in the same order: the int64 deposits identical (on a GPU, where the compiler may
    fuse a product into the rounding's addition, each point's taps may move by a unit), the sums to the
    last bits."""
    d = _rows("outliers", 4, 150, seed=9)
    c = _factor(d, 0.05)
    g = random_features(4, 150, seed=10)
    device = _device(loops)
    torch_grid, compiled_grid = binned.Grid(d, c, bins), GRIDS[loops](d.to(device), c.to(device), bins)
    for weights in (None, g):
        expected, got = (
            torch_grid._deposit(weights)[0],
            compiled_grid._deposit(None if weights is None else weights.to(device))[0],
        )
        moved = (got.cpu() - expected).abs().max().item()
        assert moved == 0 if device == "cpu" else moved <= 2 * d.shape[1]
    torch.testing.assert_close(_ranks(d, c, bins, loops), _ranks(d, c, bins, "torch"), rtol=0, atol=1e-14)
    torch.testing.assert_close(
        _rank_gradient(d, c, g, bins, loops), _rank_gradient(d, c, g, bins, "torch"), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("kind", ["clusters", "duplicates"])
@pytest.mark.parametrize("tau", TAUS)
def test_loss_agrees_with_dense_on_hard_batches(kind: str, tau: float) -> None:
    g = torch.Generator().manual_seed(7)
    if kind == "clusters":
        centres = torch.randn(5, 8, generator=g, dtype=torch.float64) * 10
        student = centres[torch.arange(60) % 5] + 0.1 * torch.randn(60, 8, generator=g, dtype=torch.float64)
    else:
        student = torch.randn(20, 8, generator=g, dtype=torch.float64).repeat(3, 1)
    teacher = student @ torch.randn(8, 6, generator=g, dtype=torch.float64) + 0.3 * torch.randn(
        60, 6, generator=g, dtype=torch.float64
    )
    student.requires_grad_()
    dense, (dense_grad,) = loss_and_grads(student, teacher, backend="torch", tau=tau)
    loss, (grad,) = loss_and_grads(student, teacher, backend="torch", tau=tau, algorithm="binned")
    assert torch.isfinite(grad).all()
    assert abs(loss.item() - dense.item()) <= 1e-4 * abs(dense.item())
    assert cosine(grad, dense_grad) >= 0.9999


def test_public_soft_ranks_within_tolerance() -> None:
    x = random_features(50, 6, seed=4)
    dense = pc_kernels.soft_ranks(x, tau=0.1, backend="torch")
    approx = pc_kernels.soft_ranks(x, tau=0.1, backend="torch", algorithm="binned")
    assert (approx - dense).abs().max().item() <= binned.RANK_TOLERANCE
    assert torch.equal(approx.diagonal(), torch.zeros(50, dtype=approx.dtype))


def test_float32_inputs_stay_within_tolerance() -> None:
    student = random_features(300, 16, seed=8)
    teacher = random_features(300, 24, seed=9)
    dense = pc_kernels.perception_coherence_loss(student, teacher, backend="torch")
    loss = pc_kernels.perception_coherence_loss(student.float(), teacher.float(), backend="torch", algorithm="binned")
    assert loss.dtype == torch.float32
    assert abs(loss.item() - dense.item()) <= 1e-4 * dense.item()
    ranks = pc_kernels.soft_ranks(student.float(), backend="torch", algorithm="binned")
    reference = pc_kernels.soft_ranks(student, backend="torch")
    # The bound, plus float32 rounding of distances and ranks (below 1e-5 here).
    assert (ranks.double() - reference).abs().max().item() <= 2 * binned.RANK_TOLERANCE


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_finite(dtype: torch.dtype) -> None:
    student = random_features(30, 8, seed=1, dtype=dtype).requires_grad_()
    teacher = random_features(30, 8, seed=2, dtype=dtype)
    loss = pc_kernels.perception_coherence_loss(student, teacher, backend="torch", algorithm="binned")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


@pytest.mark.parametrize("path", BINNED_PATHS, ids=str)
def test_recomputed_blocks_give_the_same_loss_and_gradients_as_kept_ranks(monkeypatch, path) -> None:
    """With no budget for what the forward keeps, the plan keeps no ranks (keep_ranks False) and the
    backward recomputes each block's ranks: bitwise the same loss and gradients."""
    n = 13 if path.interpreted else 29
    student = random_features(n, 6, seed=5).to(DEVICE).requires_grad_()
    teacher = random_features(n, 3, seed=6).to(DEVICE).requires_grad_()
    calls = []
    original = binned.BinnedRanks.ranks

    def counting(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(binned.BinnedRanks, "ranks", counting)
    monkeypatch.setattr(distances, "GRAM_ROWS", 4)  # blocks of 4 rows (whole Gram tiles)
    criterion = pc_kernels.PerceptionCoherenceLoss(chunk_rows=4, discrepancy="spearman", **path.options)

    def run():
        calls.clear()
        loss = criterion(student, teacher)
        grads = torch.autograd.grad(loss, (student, teacher))
        return loss.detach(), grads, len(calls)

    kept, kept_grads, kept_calls = run()
    assert criterion.last_plan.keep_ranks and criterion.last_plan.keep_distances
    monkeypatch.setattr(plan_module, "_kept_bytes", lambda device: 0)
    loss, grads, recomputed_calls = run()
    assert not criterion.last_plan.keep_ranks and not criterion.last_plan.keep_distances
    blocks = -(-n // 4)
    assert (kept_calls, recomputed_calls) == (2 * blocks, 4 * blocks)  # both sides, forward (+ backward)
    assert torch.equal(loss, kept)
    assert all(torch.equal(a, b) for a, b in zip(grads, kept_grads, strict=True))


@pytest.mark.skipif(
    not any(path.backend == "triton" for path in BINNED_PATHS),
    reason="the triton-binned path needs CUDA or the Triton interpreter (TRITON_INTERPRET=1)",
)
@pytest.mark.parametrize("n", (5, 17, 33))
def test_triton_binned_matches_torch_binned(n: int) -> None:
    """The two binned paths share the grid, its weights and its FFT; the triton path computes the
    dissimilarities (the same float64 Gram form) and the grid passes (the same operations) in kernels."""
    options = OPTION_GRID[n % len(OPTION_GRID)]
    student = random_features(n, 7, seed=n).to(DEVICE).requires_grad_()
    teacher = random_features(n, 3, seed=n + 1).to(DEVICE).requires_grad_()
    expected, expected_grads = loss_and_grads(student, teacher, backend="torch", algorithm="binned", **options)
    criterion = pc_kernels.PerceptionCoherenceLoss(backend="triton", algorithm="binned", **options)
    loss, grads = loss_and_grads(student, teacher, backend="triton", algorithm="binned", **options)
    criterion(student.detach(), teacher.detach())
    assert criterion.last_plan.rank_stage == "triton_binned"
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-12)
    for grad, reference in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, reference, rtol=1e-7, atol=1e-10)
    ranks = pc_kernels.soft_ranks(student.detach(), backend="triton", algorithm="binned")
    torch.testing.assert_close(ranks, pc_kernels.soft_ranks(student.detach(), backend="torch", algorithm="binned"))


@pytest.mark.parametrize(
    "options, words",
    [
        (dict(algorithm="fft"), "algorithm must be one of 'auto', 'dense', 'binned'"),
        (dict(bins=64), "bins applies only to algorithm='binned'"),
        (dict(algorithm="binned", bins=1), "bins must be None or an int from 2"),
        (dict(algorithm="binned", bins=True), "bins must be None or an int from 2.*of type bool"),
        (dict(algorithm="binned", bins=2.5), "bins must be None or an int from 2.*of type float"),
        (dict(algorithm="binned", bins=2**23), "bins must be None or an int from 2"),
        (dict(algorithm="binned", backend="reference"), "reference backend computes algorithm='dense' only"),
    ],
)
def test_bad_options_name_the_argument(options: dict, words: str) -> None:
    x = random_features(5, 2, seed=0)
    error = TypeError if "of type" in words else ValueError
    with pytest.raises(error, match=words.replace("(", r"\(")):
        pc_kernels.perception_coherence_loss(x, x, **options)
    with pytest.raises(error, match=words.replace("(", r"\(")):
        pc_kernels.PerceptionCoherenceLoss(**options)


def test_a_spread_too_wide_for_any_grid_is_refused() -> None:
    """Gaps just under SATURATION are not shortened: 30000 points 29.9τ apart span 9·10⁵ τ, more than
    MAX_BINS nodes of the automatic spacing (about 0.2τ)."""
    tau, n = 1e-3, 30000
    x = torch.arange(n, dtype=torch.float64)[:, None] * (29.9 * tau)
    assert (n - 1) * 29.9 / binned.automatic_spacing(n - 1) > binned.MAX_BINS
    with pytest.raises(ValueError, match=r"needs \d+ bins per row.*pass bins=.*algorithm='dense'"):
        pc_kernels.soft_ranks(x, normalize="none", tau=tau, algorithm="binned", backend="torch")
    # bins= makes it run: the grid then spans each row with that many nodes.
    ranks = pc_kernels.soft_ranks(x[:40], normalize="none", tau=tau, algorithm="binned", backend="torch", bins=4096)
    assert torch.isfinite(ranks).all()
