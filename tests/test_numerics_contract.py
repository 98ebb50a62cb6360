"""The numerics contract (docs/spec.md, "Numerics"), each clause parametrized over every computation path.

1. Non-finite features give NaN (loss values, every reduction, and the gradient), never a finite number
   and never a crash; rank matrices stay in [0, 1] wherever they are finite.
2. Finite inputs never overflow or underflow an intermediate: float32 features scaled by 1e-30 … 1e30
   give the same row_std loss (cosine: while norms stay above its 1e-8 clamp); every finite τ > 0 gives
   finite values, tiny τ the hard ranks; the gradient of a loss scaled by 1e-30 … 1e30 is the scaled
   gradient.
3. Double backward is correct (the reference, checked by finite differences) or raises an error naming
   double backward and the backend that supports it, never a silently wrong value.
(Clause 4, torch.compile, is tests/test_compile.py.)
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import pc_kernels
from helpers import DEVICE, DISCREPANCIES, DISSIMILARITIES, cosine, random_features, usable_paths

N = 10


@pytest.fixture(params=usable_paths(), ids=str)
def path(request):
    return request.param


def _features(seed: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    return random_features(N, 4, seed=seed, dtype=dtype).to(DEVICE), random_features(
        N, 3, seed=seed + 1, dtype=dtype
    ).to(DEVICE)


# ------------------------------------------------------------------------------------------ clause 1


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("side", ["student", "teacher"])
@pytest.mark.parametrize("teacher_ranks", ["soft", "hard"])
def test_a_non_finite_feature_makes_the_loss_and_gradients_nan(path, value, side, teacher_ranks):
    student, teacher = _features(1)
    (student if side == "student" else teacher)[3, 1] = value
    student.requires_grad_()
    for reduction in ("mean", "sum", "none"):
        loss = pc_kernels.perception_coherence_loss(
            student, teacher, reduction=reduction, teacher_ranks=teacher_ranks, **path.options
        )
        assert torch.isnan(loss).all(), (reduction, loss)
    (grad,) = torch.autograd.grad(loss.sum(), student)
    # Never a finite gradient (an optimizer step or GradScaler sees the NaN; the fast paths make every
    # entry NaN, autograd through the reference formulas leaves some of the bad sample's entries 0).
    assert torch.isnan(grad).any()


@pytest.mark.parametrize("kind", DISSIMILARITIES)
def test_a_non_finite_feature_gives_nan_ranks_and_distances_never_out_of_range(path, kind):
    x, _ = _features(3)
    x[5, 0] = math.nan
    for hard in (False, True):
        ranks = pc_kernels.soft_ranks(x, dissimilarity=kind, hard=hard, **path.options)
        finite = ranks[torch.isfinite(ranks)]
        assert finite.numel() == 0 or (finite.min() >= 0 and finite.max() <= 1)
        assert torch.isnan(ranks).any()
    distances = pc_kernels.pairwise_dissimilarity(x, kind, backend=path.backend)
    assert torch.isnan(distances[5]).all() and torch.isnan(distances[:, 5]).all()
    others = torch.cat([distances[:5, :5].flatten(), distances[6:, 6:].flatten()])
    assert torch.isfinite(others).all()


# ------------------------------------------------------------------------------------------ clause 2


@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1e12, 1e30])
@pytest.mark.parametrize("side", ["student", "teacher"])
@pytest.mark.parametrize("kind", DISSIMILARITIES)
def test_row_std_loss_is_scale_invariant_from_1e_minus_30_to_1e30_in_float32(path, scale, side, kind):
    student, teacher = _features(5)
    if kind == "cosine" and scale < 1e-7:
        # Below its 1e-8 norm clamp cosine is, by definition, not scale-invariant: scale a batch whose
        # norms stay above the clamp instead.
        scale = 1e-6
    base = pc_kernels.perception_coherence_loss(student, teacher, dissimilarity=kind, **path.options)
    scaled = (scale * student, teacher) if side == "student" else (student, scale * teacher)
    assert torch.isfinite(scaled[0]).all() and torch.isfinite(scaled[1]).all()
    value = pc_kernels.perception_coherence_loss(*scaled, dissimilarity=kind, **path.options)
    # float32 rounding of the scaled features and of the distances: a few ulps of the loss.
    torch.testing.assert_close(value, base, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("tau", [5e-324, 1e-300, 1e-40, 1e-8, 1e8, 1e40, 1e300])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_finite_tau_gives_finite_values_and_gradients(path, tau, dtype):
    student, teacher = _features(7, dtype)
    student.requires_grad_()
    teacher.requires_grad_()
    loss = pc_kernels.perception_coherence_loss(student, teacher, tau=tau, **path.options)
    grads = torch.autograd.grad(loss, (student, teacher))
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
    ranks = pc_kernels.soft_ranks(student.detach(), tau=tau, **path.options)
    assert torch.isfinite(ranks).all() and ranks.min() >= 0 and ranks.max() <= 1


@pytest.mark.parametrize("tau", [1e-300, 1e-30])
def test_tiny_tau_gives_the_hard_ranks(path, tau):
    x, _ = _features(9, torch.float64)
    hard = pc_kernels.soft_ranks(x, hard=True, backend="reference")
    soft = pc_kernels.soft_ranks(x, tau=tau, **path.options)
    # Distinct distances: every sigmoid saturates to 0 or 1 (binned: the grid's e^-30 tails).
    torch.testing.assert_close(soft, hard, rtol=0, atol=1e-12)


@pytest.mark.parametrize("factor", [1e-30, 1e-20, 1e20, 1e30])
@pytest.mark.parametrize("discrepancy", DISCREPANCIES)
def test_the_gradient_of_a_scaled_loss_is_the_scaled_gradient(path, factor, discrepancy):
    student, teacher = _features(11)
    student.requires_grad_()
    teacher.requires_grad_()
    options = dict(discrepancy=discrepancy, **path.options)
    plain = torch.autograd.grad(pc_kernels.perception_coherence_loss(student, teacher, **options), (student, teacher))
    scaled = torch.autograd.grad(
        factor * pc_kernels.perception_coherence_loss(student, teacher, **options), (student, teacher)
    )
    for got, want in zip(scaled, plain, strict=True):
        assert torch.isfinite(got).all()
        # float32: the scaled gradient differs from the plain one by rounding only.
        assert ((got / factor - want).norm() / want.norm()).item() < 1e-5


# ------------------------------------------------------------------------------------------ clause 3


def _second_derivative(student, teacher, create_graph_via: str, **options) -> torch.Tensor:
    """∂/∂student of ‖∂L/∂student‖², through autograd.grad or .backward(create_graph=True)."""
    if create_graph_via == "grad":
        loss = pc_kernels.perception_coherence_loss(student, teacher, **options)
        (grad,) = torch.autograd.grad(loss, student, create_graph=True)
        return torch.autograd.grad(grad.square().sum(), student)[0]
    student.grad = None
    with warnings.catch_warnings():
        # torch's advice against .backward(create_graph=True), the very call this branch tests; the cycle
        # it warns of is broken by resetting student.grad below.
        warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True", UserWarning)
        pc_kernels.perception_coherence_loss(student, teacher, **options).backward(create_graph=True)
    grad = student.grad
    student.grad = None
    grad.square().sum().backward()
    result = student.grad.clone()
    student.grad = None
    return result


@pytest.mark.parametrize("create_graph_via", ["grad", "backward"])
@pytest.mark.parametrize("kind", DISSIMILARITIES)
def test_double_backward_is_correct_or_a_clear_error(path, create_graph_via, kind):
    student, teacher = _features(13, torch.float64)
    student.requires_grad_()
    options = dict(dissimilarity=kind, tau=0.5, **path.options)
    if path.backend != "reference":
        with pytest.raises(RuntimeError, match=r"double backward.*backend='reference'"):
            _second_derivative(student, teacher, create_graph_via, **options)
        return
    got = _second_derivative(student, teacher, create_graph_via, **options)

    def squared_gradient_norm(s: torch.Tensor) -> torch.Tensor:
        s = s.detach().requires_grad_()
        (grad,) = torch.autograd.grad(pc_kernels.perception_coherence_loss(s, teacher, **options), s)
        return grad.square().sum()

    step = 1e-6
    for index in [(0, 0), (4, 2), (9, 3)]:
        bump = torch.zeros_like(student)
        bump[index] = step
        numeric = (squared_gradient_norm(student + bump) - squared_gradient_norm(student - bump)) / (2 * step)
        assert abs(got[index].item() - numeric.item()) <= 1e-5 * max(1.0, abs(numeric.item()))


def test_double_backward_through_rank_and_distance_matrices_is_correct_or_a_clear_error(path):
    x, _ = _features(15, torch.float64)
    x.requires_grad_()
    for matrix in (
        lambda f: pc_kernels.soft_ranks(f, tau=0.5, **path.options),
        lambda f: pc_kernels.pairwise_dissimilarity(f, backend=path.backend),
    ):
        (grad,) = torch.autograd.grad(matrix(x).square().sum(), x, create_graph=True)
        if path.backend != "reference":
            with pytest.raises(RuntimeError, match=r"double backward.*backend='reference'"):
                torch.autograd.grad(grad.sum(), x)
        else:
            (second,) = torch.autograd.grad(grad.sum(), x)
            assert torch.isfinite(second).all()


def test_first_order_gradients_with_create_graph_still_agree(path):
    """create_graph=True alone (no second differentiation) is fine on every path and changes nothing."""
    student, teacher = _features(17, torch.float64)
    student.requires_grad_()
    (plain,) = torch.autograd.grad(pc_kernels.perception_coherence_loss(student, teacher, **path.options), student)
    (graph,) = torch.autograd.grad(
        pc_kernels.perception_coherence_loss(student, teacher, **path.options), student, create_graph=True
    )
    assert cosine(plain, graph.detach()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(graph.detach(), plain, rtol=0, atol=0)
