"""The binned rank stage with its grid passes as Triton kernels (``kernels/binned_grid.py``): the fixed-point
deposits, the exact sign part and the cubic read-back of ``binned_ranks.Grid`` on CUDA tensors (or under
the Triton interpreter), registered as the rank stage "triton_binned" (``registry.py``). The grid, its
weights and its FFT convolution (torch, cuFFT) are ``binned_ranks.py``'s; only these passes run in
kernels, one program per row and block of points instead of several torch passes over the block."""

from __future__ import annotations

import torch

from ..kernels.binned_grid import GridRows, add_sign_part, grid_deposit, grid_read
from .binned_ranks import BinnedRanks, Grid


class TritonGrid(Grid):
    """The grid with its deposit and read-back as Triton kernels: the same operations as ``Grid``'s, the
    int64 deposits bitwise the same (integer atomics, whose sums do not depend on their order)."""

    def _rows(self) -> GridRows:
        """The per-row geometry as the kernels read it."""
        points = self.d if self.offsets is None else self.offsets
        return GridRows(points, self.low, self.per_node, self.offsets is None, self.nodes)

    def _deposit_taps(self, weights: torch.Tensor | None, scale: torch.Tensor, fixed: torch.Tensor) -> None:
        grid_deposit(self._rows(), weights, scale[..., 0], fixed)

    def _read_ranks(self, smoothed: torch.Tensor, fixed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        add_sign_part(fixed[0], scale[0, :, 0], smoothed[0])
        return grid_read(self._rows(), smoothed, None, self.d.dtype)

    def _read_gradient(self, smoothed: torch.Tensor, grad_ranks: torch.Tensor) -> torch.Tensor:
        return grid_read(self._rows(), smoothed, grad_ranks, self.d.dtype)


class TritonBinnedRanks(BinnedRanks):
    """The binned rank stage on a ``TritonGrid``."""

    grid = TritonGrid
