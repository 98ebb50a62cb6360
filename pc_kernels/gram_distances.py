"""Euclidean distance rows of float32 features by the float64 Gram form, with a hand-written backward.

For rows a_i of x1 (c, d) and b_j of x2 (n, d), both shifted by the mean μ of x2 (distances do not
change) and computed in float64:

    D²_ij = ‖a_i‖² + ‖b_j‖² − 2 a_i·b_j     (one matrix product),   D_ij = sqrt(D²_ij)

The cancellation in ‖a‖² + ‖b‖² − 2ab costs float64 about ε₆₄·(‖a‖² + ‖b‖²), far below the
resolution of float32 inputs, and D²_ij below SNAP·ε₆₄·(‖a_i‖² + ‖b_j‖²) (duplicates, up to a few
float32 ulps of the norms) is set to exactly 0. Backward, for G = ∂L/∂D and W = G / D (0 where
D = 0; W = 2G for squared distances):

    ∂L/∂a_i = a_i Σ_j W_ij − Σ_j W_ij b_j,     ∂L/∂b_j = b_j Σ_i W_ij − Σ_i W_ij a_i

two more matrix products, instead of per-pair coordinate differences (``torch.cdist``).
``algorithm="binned"`` uses it for float32 inputs, where distances would otherwise cost as much
as the binned soft ranks.
"""

from __future__ import annotations

import torch
from torch.autograd.function import FunctionCtx, once_differentiable

# D² below SNAP · ε(float64) · (‖a‖² + ‖b‖²) is rounding noise of the Gram form: set to 0.
SNAP = 16.0


def _centred(x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x2.mean(dim=0, dtype=torch.float64)
    return x1.double() - mean, x2.double() - mean


class GramDistanceRows(torch.autograd.Function):
    """(x1 (c, d), x2 (n, d), squared) → (c, n) distances (squared distances if ``squared``), in x1's dtype."""

    @staticmethod
    def forward(ctx: FunctionCtx, x1: torch.Tensor, x2: torch.Tensor, squared: bool) -> torch.Tensor:
        a, b = _centred(x1, x2)
        norms_a, norms_b = (a * a).sum(dim=1, keepdim=True), (b * b).sum(dim=1)
        scale = norms_a + norms_b
        squares = torch.addmm(scale, a, b.T, alpha=-2.0)
        squares.masked_fill_(squares <= scale.mul_(SNAP * torch.finfo(torch.float64).eps), 0.0)
        distances = squares if squared else squares.sqrt_()
        ctx.save_for_backward(x1, x2, distances)
        ctx.squared = squared
        return distances.to(x1.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x1, x2, distances = ctx.saved_tensors
        a, b = _centred(x1, x2)
        if ctx.squared:
            weights = 2.0 * grad.double()
        else:
            positive = distances > 0
            weights = torch.where(positive, grad.double() / torch.where(positive, distances, 1.0), 0.0)
        grad_a = a * weights.sum(dim=1, keepdim=True) - weights @ b
        grad_b = b * weights.sum(dim=0)[:, None] - weights.T @ a
        return grad_a.to(x1.dtype), grad_b.to(x2.dtype), None


def gram_distance_rows(x1: torch.Tensor, x2: torch.Tensor, squared: bool) -> torch.Tensor:
    """(c, n) euclidean (``squared``: squared euclidean) distances between the rows of x1 (c, d) and
    x2 (n, d), by the float64 Gram form; differentiable in both."""
    return GramDistanceRows.apply(x1, x2, squared)
