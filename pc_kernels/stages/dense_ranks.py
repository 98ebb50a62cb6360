"""The dense torch rank stage: every sigmoid, O(w²) per row, in bounded memory, on any device.

Rows of candidate dissimilarities d (m, w) with per-row factors c (``row_scale.py``). With
t_jk = tanh(c (d_j − d_k) / 2), so that σ(c (d_j − d_k)) = ½ (1 + t_jk):

    R_j = (Σ_{k != j} σ(c (d_j − d_k))) / (w − 1) = ½ + (Σ_k t_jk) / (2 (w − 1))

(the k = j term of the full sum is tanh(0) = 0). Backward, with G = ∂L/∂R, y = c·d and σ' = ¼ (1 − t²):

    ∂L/∂y_j = Σ_k σ'(z_jk) (G_j − G_k) / (w − 1)
            = (w G_j − Σ_k G_k − G_j Σ_k t_jk² + Σ_k t_jk² G_k) / (4 (w − 1))

tanh saturates to ±1 without overflow, and the difference is taken before the factor, so no τ gives
NaN; one special-function evaluation per sigmoid. t is antisymmetric (t_kj = −t_jk), so each pair
{j, k} is evaluated once: the candidates are cut into strips of ``strip_width(w)``; strip [s, e) is
paired with the candidates k >= s, and its tile adds its row sums to candidates j ∈ [s, e) and (with
the sign of the antisymmetry) its column sums to candidates k >= e. Tiles of ``tile_rows`` rows are
rebuilt in forward and again in backward inside one reused workspace of tile_rows · strip · w
elements; nothing of size m·w² is ever stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from .interfaces import RankStage
from .row_scale import RowScale

if TYPE_CHECKING:
    from ..settings import Settings

# Candidate strips per row: more strips evaluate fewer duplicate pairs ((strips + 1) / (2 strips)
# of the full w² per row) but launch more, smaller operations.
_STRIPS_PER_ROW = 16
_MIN_STRIP_WIDTH = 16


def strip_width(w: int) -> int:
    """Candidates per strip for rows of w candidates: about w / 16, at least 16 (at most w)."""
    return min(w, max(_MIN_STRIP_WIDTH, -(-w // _STRIPS_PER_ROW)))


def _tanh_tiles(
    d: torch.Tensor, factor: torch.Tensor, tile_rows: int
) -> Iterator[tuple[slice, int, int, torch.Tensor]]:
    """Yield (rows, s, e, tile) with tile[r, j − s, k − s] = tanh(c_r (d[r, j] − d[r, k]) / 2) for rows of
    one tile, j ∈ [s, e), k ∈ [s, w): every pair of candidates of every row once (both orders inside
    [s, e)). Each tile is a view of one shared workspace, valid until the next one is yielded."""
    m, w = d.shape
    strip = strip_width(w)
    half = (factor / 2.0)[:, None, None]
    workspace = d.new_empty(min(tile_rows, m) * strip * w)
    for r0 in range(0, m, tile_rows):
        rows = slice(r0, min(r0 + tile_rows, m))
        count = rows.stop - r0
        for s in range(0, w, strip):
            e = min(s + strip, w)
            tile = workspace[: count * (e - s) * (w - s)].view(count, e - s, w - s)
            torch.sub(d[rows, s:e, None], d[rows, None, s:], out=tile)
            yield rows, s, e, tile.mul_(half[rows]).tanh_()


def dense_ranks(d: torch.Tensor, factor: torch.Tensor, tile_rows: int) -> torch.Tensor:
    """Soft ranks R (m, w) of candidate rows d (m, w), w >= 2, with factors (m,) (module docstring)."""
    w = d.shape[1]
    tanh_sums = torch.zeros_like(d)
    for rows, s, e, tile in _tanh_tiles(d, factor, tile_rows):
        tanh_sums[rows, s:e] += tile.sum(dim=2)
        tanh_sums[rows, e:] -= tile[:, :, e - s :].sum(dim=1)
    return tanh_sums.mul_(1.0 / (2.0 * (w - 1))).add_(0.5)


def dense_ranks_backward(
    d: torch.Tensor, factor: torch.Tensor, grad_ranks: torch.Tensor, tile_rows: int
) -> torch.Tensor:
    """∂L/∂y (m, w), y = factor·d, from G = ∂L/∂R (m, w) (module docstring)."""
    w = d.shape[1]
    ones_and_g = torch.stack((torch.ones_like(d), grad_ranks), dim=2)
    # squared_sums[r, j] = (Σ_k t_jk², Σ_k t_jk² G_k) for row r.
    squared_sums = d.new_zeros((*d.shape, 2))
    for rows, s, e, tile in _tanh_tiles(d, factor, tile_rows):
        squared = tile.square_()
        squared_sums[rows, s:e] += torch.bmm(squared, ones_and_g[rows, s:])
        squared_sums[rows, e:] += torch.bmm(squared[:, :, e - s :].transpose(1, 2), ones_and_g[rows, s:e])
    g = grad_ranks
    numerator = w * g - g.sum(dim=1, keepdim=True) - g * squared_sums[:, :, 0] + squared_sums[:, :, 1]
    return numerator / (4.0 * (w - 1))


class DenseRanks(RankStage):
    """The dense torch rank stage, in tiles of ``tile_rows`` rows (the plan's, from its workspace)."""

    def __init__(self, tile_rows: int) -> None:
        self.tile_rows = tile_rows

    @classmethod
    def from_settings(cls, settings: Settings) -> DenseRanks:
        return cls(settings.plan.tile_rows)

    def ranks(self, d: torch.Tensor, scale: RowScale) -> torch.Tensor:
        return dense_ranks(d, scale.factor, self.tile_rows)

    def backward(self, d: torch.Tensor, scale: RowScale, grad_ranks: torch.Tensor) -> torch.Tensor:
        return dense_ranks_backward(d, scale.factor, grad_ranks, self.tile_rows)
