"""algorithm="binned" against the dense algorithm: soft ranks, loss, gradients, every option, hard rows.

The dense torch backend is the oracle here (it agrees with the brute-force oracle elsewhere). The
documented bounds (pc_kernels/binned_soft_ranks.py): normalized soft ranks within
RANK_ERROR_CONSTANT·(h/τ)² of the dense ones (RANK_TOLERANCE = 1e-5 with the automatic grid), and
the rank-step gradient ∂L/∂x_j within (|G_j| + max_k |G_k|)·(h/τ)²/(32 τ).
"""

from __future__ import annotations

import math

import pytest
import torch

import pc_kernels
from helpers import OPTION_GRID, option_id, random_features
from pc_kernels import binned_soft_ranks as binned
from pc_kernels import torch_backend
from pc_kernels.torch_soft_ranks import soft_ranks as dense_soft_ranks
from pc_kernels.torch_soft_ranks import strip_rows

TAUS = (0.01, 0.03, 0.1, 0.3, 1.0)


def _rows(kind: str, m: int, w: int, seed: int) -> torch.Tensor:
    """(m, w) float64 scaled-dissimilarity-like rows of one shape family."""
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


def _dense(rows: torch.Tensor, tau: float) -> torch.Tensor:
    return dense_soft_ranks(rows, tau, rows.shape[0], strip_rows(rows.shape[1]))


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("kind", ["gaussian", "clusters", "outliers", "ties"])
def test_soft_ranks_and_rank_gradient_within_documented_bounds(kind: str, tau: float) -> None:
    x = _rows(kind, 6, 301, seed=int(tau * 1000)).requires_grad_()
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    dense = _dense(x, tau)
    approx = binned.binned_soft_ranks(x, tau, None)
    assert (approx - dense).abs().max().item() <= binned.RANK_TOLERANCE
    (grad_dense,) = torch.autograd.grad(dense, x, g)
    (grad_binned,) = torch.autograd.grad(approx, x, g)
    h = binned.automatic_spacing(tau)
    bound = (g.abs() + g.abs().amax(dim=1, keepdim=True)) * (h / tau) ** 2 / (32.0 * tau)
    assert torch.all((grad_binned - grad_dense).abs() <= bound + 1e-12)
    cosine = torch.nn.functional.cosine_similarity(grad_binned.flatten(), grad_dense.flatten(), dim=0)
    assert cosine.item() >= 0.9999


@pytest.mark.parametrize("tau", (0.03, 0.3))
def test_error_shrinks_as_bins_grow_and_meets_the_bound(tau: float) -> None:
    x = _rows("clusters", 4, 257, seed=11)
    dense = _dense(x, tau)
    spread = (x.amax(dim=1) - x.amin(dim=1)).max().item()
    errors = []
    for bins in (64, 256, 1024, 4096):
        error = (binned.binned_soft_ranks(x, tau, bins) - dense).abs().max().item()
        h = spread / (bins - 1)
        assert error <= binned.RANK_ERROR_CONSTANT * (h / tau) ** 2
        errors.append(error)
    assert all(later < earlier / 8 for earlier, later in zip(errors, errors[1:]))


def test_outliers_cost_no_bins() -> None:
    """Gaps wider than SATURATION·τ are closed: the grid spans the occupied part of each row."""
    tau = 0.1
    x = _rows("outliers", 3, 200, seed=5)
    grid = binned.Grid.of(x.clone(), tau, None)
    # The bulk plus, per outlier, at most two coarse cells (its own and the empty one kept after it).
    width = binned.SATURATION * tau
    occupied = (x[:, 3:].amax(dim=1) - x[:, 3:].amin(dim=1)).max().item() + width + 3 * 2 * width
    assert grid.nodes <= math.ceil(occupied / binned.automatic_spacing(tau)) + 2
    assert grid.nodes < 5000 / binned.automatic_spacing(tau) / 50
    assert (binned.binned_soft_ranks(x, tau, 512) - _dense(x, tau)).abs().max().item() < 1e-3


def test_equal_and_tiny_rows_are_finite() -> None:
    x = torch.zeros(3, 10, dtype=torch.float64, requires_grad=True)
    ranks = binned.binned_soft_ranks(x, 1e-4, None)
    assert torch.allclose(ranks, torch.full_like(ranks, 0.5))
    (grad,) = torch.autograd.grad(ranks.sum(), x)
    assert torch.isfinite(grad).all()
    y = torch.tensor([[0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    assert torch.allclose(binned.binned_soft_ranks(y, 0.1, None), _dense(y, 0.1), atol=1e-5)


def _loss_and_grads(student, teacher, **options):
    loss = pc_kernels.perception_coherence_loss(student, teacher, **options)
    inputs = [x for x in (student, teacher) if x.requires_grad]
    grads = torch.autograd.grad(loss.sum(), inputs, allow_unused=True)
    return loss.detach(), [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


@pytest.mark.parametrize("options", OPTION_GRID, ids=option_id)
def test_loss_and_gradients_agree_with_dense_for_every_option(options: dict) -> None:
    student = random_features(41, 5, seed=1).requires_grad_()
    teacher = random_features(41, 7, seed=2).requires_grad_()
    for tau in (0.05, 0.5):
        dense, dense_grads = _loss_and_grads(student, teacher, backend="torch", tau=tau, **options)
        loss, grads = _loss_and_grads(student, teacher, backend="torch", tau=tau, algorithm="binned", **options)
        assert abs(loss.item() - dense.item()) <= 1e-4 * abs(dense.item())
        for grad, reference in zip(grads, dense_grads):
            if reference.abs().max() > 0:
                assert _cosine(grad, reference) >= 0.9999
                assert (grad - reference).norm() <= 1e-3 * reference.norm()


@pytest.mark.parametrize("kind", ["clusters", "duplicates"])
@pytest.mark.parametrize("tau", TAUS)
def test_loss_agrees_on_hard_batches(kind: str, tau: float) -> None:
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
    dense, (dense_grad,) = _loss_and_grads(student, teacher, backend="torch", tau=tau)
    loss, (grad,) = _loss_and_grads(student, teacher, backend="torch", tau=tau, algorithm="binned")
    assert torch.isfinite(grad).all()
    assert abs(loss.item() - dense.item()) <= 1e-4 * abs(dense.item())
    assert _cosine(grad, dense_grad) >= 0.9999


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
    assert (ranks.double() - reference).abs().max().item() <= 2 * binned.RANK_TOLERANCE


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_finite(dtype: torch.dtype) -> None:
    student = random_features(30, 8, seed=1, dtype=dtype).requires_grad_()
    teacher = random_features(30, 8, seed=2, dtype=dtype)
    loss = pc_kernels.perception_coherence_loss(student, teacher, backend="torch", algorithm="binned")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_deterministic_and_independent_of_blocks_and_row_subsets() -> None:
    student = random_features(37, 5, seed=3).requires_grad_()
    teacher = random_features(37, 4, seed=4)
    options = dict(backend="torch", algorithm="binned", reduction="none")
    first, (first_grad,) = _loss_and_grads(student, teacher, **options)
    again, (again_grad,) = _loss_and_grads(student, teacher, **options)
    assert torch.equal(first, again) and torch.equal(first_grad, again_grad)
    for chunk in (1, 6, 37):
        losses, (grad,) = _loss_and_grads(student, teacher, chunk_rows=chunk, **options)
        torch.testing.assert_close(losses, first, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(grad, first_grad, rtol=1e-10, atol=1e-14)
    subset = pc_kernels.perception_coherence_loss(student, teacher, rows=(10, 23), **options)
    torch.testing.assert_close(subset, first[10:23], rtol=1e-12, atol=1e-15)


def test_checkpointed_blocks_give_the_same_loss_and_gradients(monkeypatch) -> None:
    student = random_features(29, 6, seed=5).requires_grad_()
    teacher = random_features(29, 3, seed=6).requires_grad_()
    options = dict(backend="torch", algorithm="binned", chunk_rows=4, discrepancy="spearman")
    plain, plain_grads = _loss_and_grads(student, teacher, **options)
    calls = []

    def counting_checkpoint(function, *args, use_reentrant):
        calls.append(args[3])
        return torch.utils.checkpoint.checkpoint(function, *args, use_reentrant=use_reentrant)

    monkeypatch.setattr(torch_backend, "BINNED_MEMORY_BYTES", {"cpu": 0})
    monkeypatch.setattr(torch_backend, "checkpoint", counting_checkpoint)
    loss, grads = _loss_and_grads(student, teacher, **options)
    assert calls == list(range(0, 29, 4))
    torch.testing.assert_close(loss, plain, rtol=1e-12, atol=0)
    for grad, reference in zip(grads, plain_grads):
        torch.testing.assert_close(grad, reference, rtol=1e-10, atol=1e-15)


@pytest.mark.skipif(
    "triton" not in pc_kernels.available_backends("cuda" if torch.cuda.is_available() else "cpu"),
    reason="triton backend unavailable (needs CUDA or TRITON_INTERPRET=1)",
)
@pytest.mark.parametrize("n", (5, 17, 33))
def test_triton_backend_binned_matches_torch_backend_binned(n: int) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    options = OPTION_GRID[n % len(OPTION_GRID)]
    student = random_features(n, 7, seed=n).to(device).requires_grad_()
    teacher = random_features(n, 3, seed=n + 1).to(device).requires_grad_()
    expected, expected_grads = _loss_and_grads(student, teacher, backend="torch", algorithm="binned", **options)
    loss, grads = _loss_and_grads(student, teacher, backend="triton", algorithm="binned", **options)
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-12)
    for grad, reference in zip(grads, expected_grads):
        torch.testing.assert_close(grad, reference, rtol=1e-7, atol=1e-10)
    ranks = pc_kernels.soft_ranks(student.detach(), backend="triton", algorithm="binned")
    torch.testing.assert_close(ranks, pc_kernels.soft_ranks(student.detach(), backend="torch", algorithm="binned"))


@pytest.mark.parametrize(
    "options, words",
    [
        (dict(algorithm="fft"), "algorithm must be one of 'dense', 'binned'"),
        (dict(bins=64), "bins applies only to algorithm='binned'"),
        (dict(algorithm="binned", bins=1), "bins must be None or an int from 2"),
        (dict(algorithm="binned", bins=True), "bins must be None or an int from 2"),
        (dict(algorithm="binned", bins=2.5), "bins must be None or an int from 2"),
        (dict(algorithm="binned", bins=2**23), "bins must be None or an int from 2"),
        (dict(algorithm="binned", backend="reference"), "reference backend computes algorithm='dense' only"),
    ],
)
def test_bad_options_name_the_argument(options: dict, words: str) -> None:
    x = random_features(5, 2, seed=0)
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        pc_kernels.perception_coherence_loss(x, x, **options)
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        pc_kernels.PerceptionCoherenceLoss(**options)


def test_a_spread_too_wide_for_any_grid_is_refused() -> None:
    x = torch.cat([torch.zeros(1, 1), torch.arange(1, 40).reshape(-1, 1) * 1e6]).double()
    with pytest.raises(ValueError, match="algorithm='dense'"):
        pc_kernels.perception_coherence_loss(x, x, normalize="none", tau=1e-3, algorithm="binned", backend="torch")
