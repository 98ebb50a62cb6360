"""The separable exponential of the float32 accurate rank kernels: which rows use it, and their factors A and B.

For a row with factor c and c' = c·log2(e) (``ACCURATE_SCALE``, rounded to float32 as the kernels round it),
the sigmoid's exponential factors per row: with any centre m,

    2^(−c'(d_j − d_k)) = A_j·B_k,    A_j = 2^(−c'(d_j − m)),    B_k = 2^(c'(d_k − m)),

so the kernels' O(w²) pair loop needs no exponential: σ = 1/(1 + A_j·B_k) is one FMA and one ``rcp.approx``
(``sigmoid.py``), each factor taken once per row and element, here by torch operations in float64 (B = 2^s in
place of the exponents s, then A = 1/B, one float64 block at a time) and rounded once to float32: within ½ ulp
plus the float64 error, about 2^-51 relative. A row takes this form when
its spread is within ``SPREAD_LIMIT``, c'·(max − min) <= 248 (a row holding a NaN or an infinity never is), with
m the midpoint of its smallest and largest value: every factor is then a normal float32 in [2^-124, 2^124], and
so are A·ρ and B·ρ, ρ = 1/(1 + A·B) (A·ρ >= min(A, 1/B)/2 >= 2^-125). Where A·B leaves float32's normal range
(|t| > 126 for t = c'(d_j − d_k)), σ is 1 or 0 and σ' is 0 or A·B: the true values are then below 2^-126 or
within an ulp of 1. The other rows keep the per-pair form of ``sigmoid.py``. The choice depends only on the
row's values and factor, so a row's result is the same whatever block, row subset or rank computes it.
"""

from __future__ import annotations

import torch

from .sigmoid import ACCURATE_SCALE

SPREAD_LIMIT = 248.0  # largest c'·(max − min) of a separable row: |c'(d − m)| <= 124


def scaled_factor(factor: torch.Tensor) -> torch.Tensor:
    """c' = c·log2(e) (m,) float64, from float32 factors c, rounded to float32 as the kernels round it."""
    return (factor * torch.tensor(ACCURATE_SCALE.value, dtype=torch.float32, device=factor.device)).to(torch.float64)


def separable_rows(d: torch.Tensor, factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which rows take the separable form, (m,) int8 (1: separable, 0: per pair), and their factors A and B
    (m, w) float32 (unspecified on the other rows), of float32 candidate rows d (m, w) with float32 factors c (m,)."""
    low, high = torch.aminmax(d, dim=1)
    low, high = low.to(torch.float64), high.to(torch.float64)
    scaled = scaled_factor(factor)
    separable = scaled * (high - low) <= SPREAD_LIMIT
    power = torch.sub(d, torch.where(separable, (low + high) / 2, torch.nan)[:, None]).mul_(scaled[:, None]).exp2_()
    b = power.to(torch.float32)
    return separable.to(torch.int8), power.reciprocal_().to(torch.float32), b
