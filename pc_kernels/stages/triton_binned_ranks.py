"""The binned rank stage's grid passes as Triton kernels (``kernels/binned_grid.py``): the fixed-point
deposits, the exact sign part and the cubic read-back of ``binned_ranks.Grid`` on CUDA tensors (or under
the Triton interpreter), chosen by ``Grid(..., loops="triton")``. The grid, its weights and its FFT
convolution (torch, cuFFT) are ``binned_ranks.py``'s; only these passes run in kernels, one program per
row and block of points instead of several torch passes over the block."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..kernels.binned_grid import GridRows, add_sign_part, grid_deposit, grid_read

if TYPE_CHECKING:
    from .binned_ranks import Grid


def _rows(grid: Grid) -> GridRows:
    """The per-row geometry of ``grid`` as the kernels read it."""
    affine = grid.offsets is None
    points = grid.d if grid.offsets is None else grid.offsets
    return GridRows(points, grid.low, grid.per_node, affine, grid.nodes)


def deposit(grid: Grid, weights: torch.Tensor | None, scale: torch.Tensor) -> torch.Tensor:
    """int64 fixed-point masses (sets, m, nodes): the ones set and, if given, the weights (m, w), with
    float64 ``scale`` (sets, m, 1)."""
    return grid_deposit(_rows(grid), weights, scale[..., 0])


def read_ranks(grid: Grid, smoothed: torch.Tensor, fixed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Soft ranks (m, w) in d's dtype from the smoothed node values (1, m, L), to which the exact sign part
    of the masses ``fixed`` (1, m, nodes) is added in place."""
    add_sign_part(fixed[0], scale[0, :, 0], smoothed[0])
    return grid_read(_rows(grid), smoothed, None, grid.d.dtype)


def read_gradient(grid: Grid, smoothed: torch.Tensor, grad_ranks: torch.Tensor) -> torch.Tensor:
    """∂L/∂y (m, w) in d's dtype from the smoothed node values of the ones and G sets (2, m, L)."""
    return grid_read(_rows(grid), smoothed, grad_ranks, grid.d.dtype)
