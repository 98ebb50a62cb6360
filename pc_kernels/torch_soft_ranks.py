"""Soft ranks of dissimilarity rows, in bounded memory, with a hand-written backward.

This is the O(n³) part of the torch backend. It works on the *candidate layout*: row r of an
(m, w) tensor holds the w = n − 1 scaled dissimilarities D~_ij of one reference i to its
candidates j != i (the diagonal removed). With h = D~ / (2τ) and t_jk = tanh(h_j − h_k), so
that σ((D~_j − D~_k)/τ) = ½ (1 + t_jk):

    R_j = 1/(n−2) Σ_{k != j} σ(z_jk) = ½ + (Σ_k t_jk) / (2 (n − 2))

(the k = j term of the full sum is tanh(0) = 0). Backward, with G = ∂L/∂R and σ' = ¼ (1 − t²):

    ∂L/∂D~_j = 1/(τ (n−2)) Σ_k σ'(z_jk) (G_j − G_k)
             = ((n − 1) G_j − Σ_k G_k − G_j Σ_k t_jk² + Σ_k t_jk² G_k) / (4 τ (n − 2))

tanh saturates to ±1 without overflow (no NaN for tiny τ), and costs one special-function
evaluation per sigmoid. t is antisymmetric (t_kj = −t_jk), so each pair {j, k} is evaluated
once: the candidates are cut into strips of ``strip_rows``; strip [s, e) is paired with the
candidates k >= s, and its tile adds its row sums to candidates j ∈ [s, e) and (with the sign
of the antisymmetry) its column sums to candidates k >= e. Tiles of ``chunk_rows`` reference
rows are rebuilt in forward and again in backward inside one reused workspace of
``chunk_rows · strip_rows · w`` elements; nothing of size m·w² is ever stored.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.autograd.function import FunctionCtx, once_differentiable

# Candidate strips per row: more strips evaluate fewer duplicate pairs ((strips + 1) / (2 strips)
# of the full w² per row) but launch more, smaller operations.
_STRIPS_PER_ROW = 16
_MIN_STRIP_ROWS = 16


def strip_rows(w: int) -> int:
    """Candidates per strip for rows of w candidates: about w / 16, at least 16 (at most w)."""
    return min(w, max(_MIN_STRIP_ROWS, -(-w // _STRIPS_PER_ROW)))


def _tanh_tiles(h: torch.Tensor, chunk_rows: int, strip: int) -> Iterator[tuple[slice, int, int, torch.Tensor]]:
    """Yield (rows, s, e, tile) with tile[r, j − s, k − s] = tanh(h[rows][r, j] − h[rows][r, k])
    for j ∈ [s, e), k ∈ [s, w): every pair of candidates of every row once (both orders inside
    [s, e)). Each tile is a view of one shared workspace, valid until the next one is yielded."""
    m, w = h.shape
    workspace = h.new_empty(min(chunk_rows, m) * min(strip, w) * w)
    for r0 in range(0, m, chunk_rows):
        rows = slice(r0, min(r0 + chunk_rows, m))
        c = rows.stop - r0
        for s in range(0, w, strip):
            e = min(s + strip, w)
            tile = workspace[: c * (e - s) * (w - s)].view(c, e - s, w - s)
            torch.sub(h[rows, s:e, None], h[rows, None, s:], out=tile)
            yield rows, s, e, tile.tanh_()


class ChunkedSoftRanks(torch.autograd.Function):
    """(m, w) scaled candidate dissimilarities → (m, w) soft ranks; see the module docstring."""

    @staticmethod
    def forward(ctx: FunctionCtx, scaled: torch.Tensor, tau: float, chunk_rows: int, strip: int) -> torch.Tensor:
        w = scaled.shape[1]
        h = (scaled / (2.0 * tau)).contiguous()
        tanh_sums = torch.zeros_like(h)
        for rows, s, e, tile in _tanh_tiles(h, chunk_rows, strip):
            tanh_sums[rows, s:e] += tile.sum(dim=2)
            tanh_sums[rows, e:] -= tile[:, :, e - s :].sum(dim=1)
        ctx.save_for_backward(h)
        ctx.tau = tau
        ctx.chunk_rows = chunk_rows
        ctx.strip = strip
        return tanh_sums.mul_(1.0 / (2.0 * (w - 1))).add_(0.5)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (h,) = ctx.saved_tensors
        w = h.shape[1]
        ones_and_g = torch.stack((torch.ones_like(h), g), dim=2)
        # squared_sums[r, j] = (Σ_k t_jk², Σ_k t_jk² G_k) for reference row r.
        squared_sums = h.new_zeros((*h.shape, 2))
        for rows, s, e, tile in _tanh_tiles(h, ctx.chunk_rows, ctx.strip):
            squared = tile.square_()
            squared_sums[rows, s:e] += torch.bmm(squared, ones_and_g[rows, s:])
            squared_sums[rows, e:] += torch.bmm(squared[:, :, e - s :].transpose(1, 2), ones_and_g[rows, s:e])
        numerator = w * g - g.sum(dim=1, keepdim=True) - g * squared_sums[:, :, 0] + squared_sums[:, :, 1]
        return numerator / (4.0 * ctx.tau * (w - 1)), None, None, None


def soft_ranks(scaled: torch.Tensor, tau: float, chunk_rows: int, strip: int) -> torch.Tensor:
    """Soft ranks R (m, w) of scaled candidate dissimilarities (m, w), w = n − 1 >= 2.

    R[r, j] = 1/(n−2) Σ_{k != j} σ((scaled[r, j] − scaled[r, k]) / τ), differentiable in
    ``scaled``. ``chunk_rows`` reference rows and ``strip`` candidates (``strip_rows(w)`` is
    a good choice) make one tile: the workspace holds chunk_rows · strip · w elements.
    """
    return ChunkedSoftRanks.apply(scaled, tau, chunk_rows, strip)
