"""The fused Triton rank stage: soft ranks and their gradient by the kernels of ``kernels/soft_rank.py``
(one program per reference row and tile of candidates; same formulas as ``dense_ranks.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..kernels.soft_rank import soft_rank_backward, soft_rank_forward
from .interfaces import RankStage
from .row_scale import RowScale

if TYPE_CHECKING:
    from ..settings import Settings


def triton_ranks(d: torch.Tensor, factor: torch.Tensor, fast_sigmoid: bool) -> torch.Tensor:
    """Soft ranks R (m, w) of candidate rows d (m, w) with factors (m,)."""
    return soft_rank_forward(d.contiguous(), factor.contiguous(), fast_sigmoid)


def triton_ranks_backward(
    d: torch.Tensor, factor: torch.Tensor, grad_ranks: torch.Tensor, fast_sigmoid: bool
) -> torch.Tensor:
    """∂L/∂y (m, w), y = factor·d, from G = ∂L/∂R (m, w)."""
    return soft_rank_backward(d.contiguous(), factor.contiguous(), grad_ranks.contiguous(), fast_sigmoid)


class TritonRanks(RankStage):
    """The fused Triton rank stage; ``fast_sigmoid``: the tanh.approx sigmoid (float32 on CUDA)."""

    def __init__(self, fast_sigmoid: bool) -> None:
        self.fast_sigmoid = fast_sigmoid

    @classmethod
    def from_settings(cls, settings: Settings) -> TritonRanks:
        return cls(settings.plan.fast_sigmoid)

    def ranks(self, d: torch.Tensor, scale: RowScale) -> torch.Tensor:
        return triton_ranks(d, scale.factor, self.fast_sigmoid)

    def backward(self, d: torch.Tensor, scale: RowScale, grad_ranks: torch.Tensor) -> torch.Tensor:
        return triton_ranks_backward(d, scale.factor, grad_ranks, self.fast_sigmoid)
