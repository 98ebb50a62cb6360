"""The dissimilarity policy of every fast path: prepared features, the torch dissimilarity stage (and its
compiled-loop variant), and the backward every dissimilarity stage shares.

One policy, the same for float32 and float64 inputs (see docs/spec.md, "Numerics"):

* Non-finite features are replaced by 0 before anything else, so no stage ever sees one; the
  pipeline makes the loss (and every gradient) NaN instead (``PreparedFeatures.finite``).
* Prepared features are float64. For "euclidean" and "sqeuclidean" they are shifted by their coordinate-wise
  median (distances do not change; each coordinate moves by one of its own values, so data on a grid
  shifts exactly and keeps its ties) and multiplied by 2^−e, e the binary exponent of the largest
  shifted |value|: an exact rescaling that puts every value in (−1, 1), so no square, product or sum of
  the Gram form can overflow or underflow whatever the input magnitude. Distances then come out in
  units of 2^e (squared distances: 4^e), which ``unit_exponent`` records. Cosine features are used
  as they are (its 1e-8 norm clamp is absolute), with norms clamped below at 1e-8.
* Gram form in float64: S_ij = N_i + N_j − 2 <x_i, x_j> (N the squared norms), and S_ij <=
  SNAP·(N_i + N_j) with SNAP = 16·ε₆₄, rounding noise of the form, counts as exactly 0: duplicates, and pairs closer
  than about 1e-7 of the features' norms (after the shift), get D = 0. D = √S (euclidean), S
  (sqeuclidean), 1 − <x_i, x_j> / (a_i a_j) (cosine, a = max(‖x‖, 1e-8)). Rounding: about
  ε₆₄·(N_i + N_j) on S, far below float32 resolution.
* Results are written in the computation dtype (float32 or float64), in the candidate layout.

Backward, for W the weights below and g = ∂L/∂D of reference rows i against every j (D symmetric, so
each entry feeds both x_i and x_j), accumulated in float64 across blocks:

    ∂L/∂x_i += x_i·ρ_i − Σ_j W_ij x_j,      ∂L/∂x_j += x_j·κ_j − Σ_i W_ij x_i
    euclidean: W = g / D (0 where D = 0), ρ = Σ_j W_ij, κ = Σ_i W_ij;   sqeuclidean: W = 2g, same sums
    cosine:    W = g / (a_i a_j),  ρ_i = [‖x_i‖ > 1e-8] Σ_j g_ij (1 − D_ij) / a_i²,  κ likewise

two matrix products per block, in float64: x_i·ρ_i − Σ_j W_ij x_j cancels down to the within-cluster
differences of a batch of far-apart clusters, which float32 products would lose.

Results do not depend on the pipeline's blocks (``chunk_rows``), to the last bit: a matrix product's
rounding depends on its shape (one row is a matrix-vector product, summed in another order than a row of
a matrix-matrix product), so every product here is taken over tiles of GRAM_ROWS reference rows aligned
to multiples of GRAM_ROWS (``gram_tiles``), the same tiles whatever block holds them, and the backward
adds the tiles' contributions to the gradient in increasing order. The pipeline's blocks are made of whole
tiles (``pipeline._blocks``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..options import COSINE_NORM_EPS
from .interfaces import DissimilarityStage
from .layout import drop_diagonal, insert_diagonal

# S <= SNAP · ε(float64) · (N_i + N_j) is rounding noise of the Gram form: it counts as 0.
SNAP = 16.0 * torch.finfo(torch.float64).eps
# Reference rows of one tile of the Gram products (module docstring): large enough for an efficient matrix
# product, small next to the pipeline's blocks.
GRAM_ROWS = 64


def gram_tiles(start: int, end: int) -> Iterator[tuple[int, int]]:
    """Tiles [a, b) of rows [start, end): the multiples of GRAM_ROWS inside it are their boundaries."""
    a = start
    while a < end:
        b = min(end, (a // GRAM_ROWS + 1) * GRAM_ROWS)
        yield a, b
        a = b


@dataclass(frozen=True)
class PreparedFeatures:
    """One feature set ready for a dissimilarity stage.

    Attributes:
        features: (n, p) float64, contiguous (see the module docstring).
        norms: (n,) float64: squared norms N (euclidean, sqeuclidean) or clamped norms a (cosine).
        exponent: () int32 tensor e: the features were multiplied by 2^−e (0 for cosine).
        finite: () bool tensor: whether every input feature was finite.
        dissimilarity: "euclidean", "sqeuclidean" or "cosine" (the option).
        dtype: the computation dtype of the results (float32 or float64).
    """

    features: torch.Tensor
    norms: torch.Tensor
    exponent: torch.Tensor
    finite: torch.Tensor
    dissimilarity: str
    dtype: torch.dtype

    @property
    def unit_exponent(self) -> torch.Tensor:
        """u with D = 2^u·D' for the stage's output D': e (euclidean), 2e (sqeuclidean), 0 (cosine)."""
        return self.exponent * 2 if self.dissimilarity == "sqeuclidean" else self.exponent


def prepare(x: torch.Tensor, dissimilarity: str) -> PreparedFeatures:
    """Prepare (n, p) features of the computation dtype for ``dissimilarity`` (see the module docstring)."""
    finite_mask = torch.isfinite(x)
    features = torch.where(finite_mask, x, 0.0).to(torch.float64)
    finite = finite_mask.all()
    if dissimilarity == "cosine":
        norms = torch.linalg.vector_norm(features, dim=1).clamp_min(COSINE_NORM_EPS)
        exponent = torch.zeros((), dtype=torch.int32, device=x.device)
        return PreparedFeatures(features.contiguous(), norms, exponent, finite, dissimilarity, x.dtype)
    shifted = features - features.median(dim=0).values
    exponent = torch.frexp(shifted.abs().amax())[1]
    features = torch.ldexp(shifted, -exponent).contiguous()
    norms = (features * features).sum(dim=1)
    return PreparedFeatures(features, norms, exponent, finite, dissimilarity, x.dtype)


def pack(prepared: PreparedFeatures) -> torch.Tensor:
    """``prepared`` as one (n, p + 3) float64 tensor (features, norms, exponent, finite), for a custom op
    to return and its backward to ``unpack``."""
    n = prepared.features.shape[0]
    facts = torch.stack((prepared.exponent.to(torch.float64), prepared.finite.to(torch.float64)))
    return torch.cat((prepared.features, prepared.norms[:, None], facts.expand(n, 2)), dim=1)


def unpack(packed: torch.Tensor, dissimilarity: str, dtype: torch.dtype) -> PreparedFeatures:
    """The PreparedFeatures ``pack`` gave ``packed``."""
    exponent, finite = packed[0, -2].to(torch.int32), packed[0, -1] > 0
    features, norms = packed[:, :-3].contiguous(), packed[:, -3].contiguous()
    return PreparedFeatures(features, norms, exponent, finite, dissimilarity, dtype)


def _gram_rows(f: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """(c, n) inner products <f_i, f_j> of rows start … end − 1 against every row, tile by tile."""
    gram = f.new_empty((end - start, f.shape[0]))
    for a, b in gram_tiles(start, end):
        torch.mm(f[a:b], f.T, out=gram[a - start : b - start])
    return gram


def _square_rows(prepared: PreparedFeatures, start: int, end: int) -> torch.Tensor:
    """(c, n) float64 dissimilarities D' of rows start … end − 1 against every row (diagonal included)."""
    f, norms = prepared.features, prepared.norms
    gram = _gram_rows(f, start, end)
    if prepared.dissimilarity == "cosine":
        return gram.div_(norms[start:end, None]).div_(norms[None, :]).neg_().add_(1.0)
    total = norms[start:end, None] + norms[None, :]
    squares = gram.mul_(-2.0).add_(total)
    squares.masked_fill_(squares <= total.mul_(SNAP), 0.0)
    return squares.sqrt_() if prepared.dissimilarity == "euclidean" else squares


def square_matrix(prepared: PreparedFeatures) -> torch.Tensor:
    """(n, n) float64 dissimilarities D' of every pair, zero on the diagonal."""
    n = prepared.features.shape[0]
    return _square_rows(prepared, 0, n).fill_diagonal_(0.0)


class TorchDissimilarity(DissimilarityStage):
    """The torch dissimilarity stage: the Gram form by one matrix product per block, its epilogue and the
    backward's weights by torch operations (any device)."""

    def rows(self, prepared: PreparedFeatures, start: int, end: int) -> torch.Tensor:
        return drop_diagonal(_square_rows(prepared, start, end), start).to(prepared.dtype)

    def weights(
        self, prepared: PreparedFeatures, start: int, d: torch.Tensor, grad_d: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, slopes), each (c, n) float64 with a zero diagonal, of candidate rows d (c, n − 1) and their
        gradient grad_d: W = g/D (euclidean, 0 where D = 0), 2g (sqeuclidean) or g (cosine, divided by the
        norms afterwards); the slopes are W, or for cosine g·(1 − D). (The same tensor when equal.)"""
        weights = insert_diagonal(grad_d.to(torch.float64), start)
        if prepared.dissimilarity == "sqeuclidean":
            return weights.mul_(2.0), weights
        if prepared.dissimilarity == "euclidean":
            dissimilarities = insert_diagonal(d.to(torch.float64), start)
            positive = dissimilarities > 0
            weights = torch.where(positive, weights / torch.where(positive, dissimilarities, 1.0), 0.0)
            return weights, weights
        return weights, weights * insert_diagonal(1.0 - d.to(torch.float64), start)

    def accumulate_gradient(
        self, prepared: PreparedFeatures, start: int, d: torch.Tensor, grad_d: torch.Tensor, out: torch.Tensor
    ) -> None:
        """The matrix-product backward of the module docstring, shared by every dissimilarity stage."""
        f = prepared.features
        for a, b in gram_tiles(start, start + d.shape[0]):
            rows, tile = f[a:b], slice(a - start, b - start)
            weights, slopes = self.weights(prepared, a, d[tile], grad_d[tile])
            row_sums, column_sums = slopes.sum(dim=1), slopes.sum(dim=0)
            if prepared.dissimilarity == "cosine":
                norms = prepared.norms
                live = (norms > COSINE_NORM_EPS).to(torch.float64)
                row_sums = row_sums * live[a:b] / norms[a:b].square()
                column_sums = column_sums * live / norms.square()
                weights = weights.div_(norms[a:b, None]).div_(norms[None, :])
            # In place, one pass over ``out`` each, tile by tile (the same tiles whatever the block).
            out[a:b].addcmul_(rows, row_sums[:, None]).addmm_(weights, f, alpha=-1.0)
            out.addcmul_(f, column_sums[:, None]).addmm_(weights.T, rows, alpha=-1.0)


class NumbaDissimilarity(TorchDissimilarity):
    """The torch dissimilarity stage with its epilogue and the backward's weights as compiled loops (CPU
    tensors, numba installed): one pass over each block instead of several."""

    def rows(self, prepared: PreparedFeatures, start: int, end: int) -> torch.Tensor:
        from .numba_loops import DISSIMILARITY_CODES, distance_rows

        f = prepared.features
        euclidean = prepared.dissimilarity == "euclidean"  # the loop gives S; torch's square root is correctly rounded
        out = torch.empty((end - start, f.shape[0] - 1), dtype=torch.float64 if euclidean else prepared.dtype)
        gram, code = _gram_rows(f, start, end).numpy(), DISSIMILARITY_CODES[prepared.dissimilarity]
        distance_rows(gram, prepared.norms.numpy(), start, code, SNAP, out.numpy())
        return out.sqrt_().to(prepared.dtype) if euclidean else out

    def weights(
        self, prepared: PreparedFeatures, start: int, d: torch.Tensor, grad_d: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from .numba_loops import DISSIMILARITY_CODES, distance_weights

        c, n = d.shape[0], d.shape[1] + 1
        weights = torch.empty((c, n), dtype=torch.float64)
        slopes = torch.empty((c, n), dtype=torch.float64) if prepared.dissimilarity == "cosine" else weights
        code = DISSIMILARITY_CODES[prepared.dissimilarity]
        distance_weights(d.numpy(), grad_d.numpy(), start, code, weights.numpy(), slopes.numpy())
        return weights, slopes
