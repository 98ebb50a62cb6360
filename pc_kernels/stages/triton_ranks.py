"""The fused Triton rank stage: soft ranks and their gradient by the kernels of ``kernels/soft_rank.py``
(one program per reference row and tile of candidates; same formulas as ``dense_ranks.py``)."""

from __future__ import annotations

import torch

from ..kernels.soft_rank import soft_rank_backward, soft_rank_forward


def triton_ranks(d: torch.Tensor, factor: torch.Tensor, fast_sigmoid: bool) -> torch.Tensor:
    """Soft ranks R (m, w) of candidate rows d (m, w) with factors (m,)."""
    return soft_rank_forward(d.contiguous(), factor.contiguous(), fast_sigmoid)


def triton_ranks_backward(
    d: torch.Tensor, factor: torch.Tensor, grad_ranks: torch.Tensor, fast_sigmoid: bool
) -> torch.Tensor:
    """∂L/∂y (m, w), y = factor·d, from G = ∂L/∂R (m, w)."""
    return soft_rank_backward(d.contiguous(), factor.contiguous(), grad_ranks.contiguous(), fast_sigmoid)
