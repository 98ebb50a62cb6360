"""The per-reference discrepancy of docs/spec.md between student and teacher ranks, forward and backward, for every
fast path: one ``Discrepancy`` per value of the option. Rows of rank candidates R^S, R^T (m, w), population
moments over the w = n − 1 candidates:

    "mse":       ℓ = (1/w) Σ_j (R^S_j − R^T_j)²
                 ∂ℓ/∂R^S_j = 2 (R^S_j − R^T_j) / w = −∂ℓ/∂R^T_j
    "spearman":  ℓ = 1 − ρ,  ρ = cov / √(var_S var_T + 1e-12)   (u = R − mean, cov = (1/w) Σ u^S u^T)
                 ∂ℓ/∂R^S_j = −u^T_j / (w √·) + cov var_T u^S_j / (w √·³)   (and symmetrically for R^T)
    "reciprocal_rank_mse":
                 ℓ = Σ_j W_j e_j²,  e = R^S − R^T,  W_j = v_j / V,  V = Σ_k v_k,  v_j = 1 / (1 + (w − 1) R^T_j)
                 ∂ℓ/∂R^S_j = 2 W_j e_j,   ∂ℓ/∂R^T_j = −2 W_j e_j + v′_j (e_j² − ℓ) / V,   v′_j = −(w − 1) v_j²
"""

from __future__ import annotations

import torch

from ..options import SPEARMAN_EPS
from .interfaces import Discrepancy


def _moments(rs: torch.Tensor, rt: torch.Tensor) -> tuple[torch.Tensor, ...]:
    us = rs - rs.mean(dim=1, keepdim=True)
    ut = rt - rt.mean(dim=1, keepdim=True)
    var_s, var_t, cov = us.square().mean(dim=1), ut.square().mean(dim=1), (us * ut).mean(dim=1)
    return us, ut, var_s, var_t, cov, torch.sqrt(var_s * var_t + SPEARMAN_EPS)


class MeanSquaredError(Discrepancy):
    """``discrepancy="mse"``."""

    def losses(self, rs: torch.Tensor, rt: torch.Tensor) -> torch.Tensor:
        return (rs - rt).square().mean(dim=1)

    def backward(
        self, rs: torch.Tensor, rt: torch.Tensor, grad_losses: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        grad_s = (rs - rt).mul_((2.0 / rs.shape[1]) * grad_losses[:, None])
        return grad_s, -grad_s


class Spearman(Discrepancy):
    """``discrepancy="spearman"``."""

    def losses(self, rs: torch.Tensor, rt: torch.Tensor) -> torch.Tensor:
        *_, cov, root = _moments(rs, rt)
        return 1.0 - cov / root

    def backward(
        self, rs: torch.Tensor, rt: torch.Tensor, grad_losses: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        us, ut, var_s, var_t, cov, root = _moments(rs, rt)
        g = (grad_losses / (rs.shape[1] * root))[:, None]
        common = (cov / (root * root))[:, None]
        grad_s = g * (common * var_t[:, None] * us - ut)
        grad_t = g * (common * var_s[:, None] * ut - us)
        return grad_s, grad_t


def _reciprocal_ranks(rt: torch.Tensor) -> torch.Tensor:
    """v = 1 / (1 + (w − 1) R^T): the reciprocal of each candidate's soft 1-based rank in the teacher's row."""
    return rt.mul(rt.shape[1] - 1).add_(1.0).reciprocal_()


class ReciprocalRankMeanSquaredError(Discrepancy):
    """``discrepancy="reciprocal_rank_mse"``."""

    def losses(self, rs: torch.Tensor, rt: torch.Tensor) -> torch.Tensor:
        v = _reciprocal_ranks(rt)
        return (v * (rs - rt).square()).sum(dim=1) / v.sum(dim=1)

    def backward(
        self, rs: torch.Tensor, rt: torch.Tensor, grad_losses: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        v = _reciprocal_ranks(rt)
        total = v.sum(dim=1, keepdim=True)
        error = rs - rt
        squared = error.square()
        losses = (v * squared).sum(dim=1, keepdim=True) / total
        g = grad_losses[:, None] / total
        grad_s = (2.0 * g) * v * error
        slope = v.square().mul_(1 - rs.shape[1])
        return grad_s, g * slope * (squared - losses) - grad_s
