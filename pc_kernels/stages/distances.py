"""The distance policy of every fast path: prepared features, the torch dissimilarity stage, and the
backward every dissimilarity stage shares.

One policy, the same for float32 and float64 inputs (see docs/spec.md, "Numerics"):

* Non-finite features are replaced by 0 before anything else, so no stage ever sees one; the
  pipeline makes the loss (and every gradient) NaN instead (``PreparedFeatures.finite``).
* Prepared features are float64. For the euclidean kinds they are shifted by their coordinate-wise
  median (distances do not change; each coordinate moves by one of its own values, so data on a grid
  shifts exactly and keeps its ties) and multiplied by 2^−e, e the binary exponent of the largest
  shifted |value|: an exact rescaling that puts every value in (−1, 1), so no square, product or sum of
  the Gram form can overflow or underflow whatever the input magnitude. Distances then come out in
  units of 2^e (squared distances: 4^e), which ``distance_exponent`` records. Cosine features are used
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
        norms: (n,) float64: squared norms N (euclidean kinds) or clamped norms a (cosine).
        exponent: () int32 tensor e: the features were multiplied by 2^−e (0 for cosine).
        finite: () bool tensor: whether every input feature was finite.
        kind: "euclidean", "sqeuclidean" or "cosine".
        dtype: the computation dtype of the results (float32 or float64).
    """

    features: torch.Tensor
    norms: torch.Tensor
    exponent: torch.Tensor
    finite: torch.Tensor
    kind: str
    dtype: torch.dtype

    @property
    def distance_exponent(self) -> torch.Tensor:
        """u with D = 2^u·D' for the stage's output D': e (euclidean), 2e (sqeuclidean), 0 (cosine)."""
        return self.exponent * 2 if self.kind == "sqeuclidean" else self.exponent


def prepare(x: torch.Tensor, kind: str) -> PreparedFeatures:
    """Prepare (n, p) features of the computation dtype for ``kind`` (see the module docstring)."""
    finite_mask = torch.isfinite(x)
    features = torch.where(finite_mask, x, 0.0).to(torch.float64)
    finite = finite_mask.all()
    if kind == "cosine":
        norms = torch.linalg.vector_norm(features, dim=1).clamp_min(COSINE_NORM_EPS)
        exponent = torch.zeros((), dtype=torch.int32, device=x.device)
        return PreparedFeatures(features.contiguous(), norms, exponent, finite, kind, x.dtype)
    shifted = features - features.median(dim=0).values
    exponent = torch.frexp(shifted.abs().amax())[1]
    features = torch.ldexp(shifted, -exponent).contiguous()
    norms = (features * features).sum(dim=1)
    return PreparedFeatures(features, norms, exponent, finite, kind, x.dtype)


def pack(prepared: PreparedFeatures) -> torch.Tensor:
    """``prepared`` as one (n, p + 3) float64 tensor (features, norms, exponent, finite), for a custom op
    to return and its backward to ``unpack``."""
    n = prepared.features.shape[0]
    facts = torch.stack((prepared.exponent.to(torch.float64), prepared.finite.to(torch.float64)))
    return torch.cat((prepared.features, prepared.norms[:, None], facts.expand(n, 2)), dim=1)


def unpack(packed: torch.Tensor, kind: str, dtype: torch.dtype) -> PreparedFeatures:
    """The PreparedFeatures ``pack`` gave ``packed``."""
    exponent, finite = packed[0, -2].to(torch.int32), packed[0, -1] > 0
    return PreparedFeatures(packed[:, :-3].contiguous(), packed[:, -3].contiguous(), exponent, finite, kind, dtype)


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
    if prepared.kind == "cosine":
        return gram.div_(norms[start:end, None]).div_(norms[None, :]).neg_().add_(1.0)
    total = norms[start:end, None] + norms[None, :]
    squares = gram.mul_(-2.0).add_(total)
    squares.masked_fill_(squares <= total.mul_(SNAP), 0.0)
    return squares.sqrt_() if prepared.kind == "euclidean" else squares


def candidate_rows(prepared: PreparedFeatures, start: int, end: int, loops: str = "torch") -> torch.Tensor:
    """The torch dissimilarity stage: (end − start, n − 1) candidate dissimilarities D' of reference rows
    start … end − 1, in the computation dtype (D = 2^u·D', u = ``prepared.distance_exponent``).
    ``loops``: "torch", or "numba" (CPU tensors: the epilogue in one compiled pass)."""
    if loops == "numba":
        from .numba_loops import KIND_CODES, distance_rows

        f = prepared.features
        euclidean = prepared.kind == "euclidean"  # the loop gives S; torch's square root is correctly rounded
        out = torch.empty((end - start, f.shape[0] - 1), dtype=torch.float64 if euclidean else prepared.dtype)
        gram = _gram_rows(f, start, end)
        distance_rows(gram.numpy(), prepared.norms.numpy(), start, KIND_CODES[prepared.kind], SNAP, out.numpy())
        return out.sqrt_().to(prepared.dtype) if euclidean else out
    return drop_diagonal(_square_rows(prepared, start, end), start).to(prepared.dtype)


def square_matrix(prepared: PreparedFeatures) -> torch.Tensor:
    """(n, n) float64 dissimilarities D' of every pair, zero on the diagonal."""
    n = prepared.features.shape[0]
    return _square_rows(prepared, 0, n).fill_diagonal_(0.0)


def _weights(
    prepared: PreparedFeatures, start: int, d: torch.Tensor, grad_d: torch.Tensor, loops: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W (c, n), ρ (c,), κ (n,)) of the module docstring for candidate rows d (c, n − 1) of reference rows
    start … start + c − 1 and their gradient grad_d."""
    c, n = d.shape[0], d.shape[1] + 1
    cosine = prepared.kind == "cosine"
    if loops == "numba":
        from .numba_loops import KIND_CODES, distance_weights

        weights = torch.empty((c, n), dtype=torch.float64)
        slopes = torch.empty((c, n), dtype=torch.float64) if cosine else weights
        distance_weights(d.numpy(), grad_d.numpy(), start, KIND_CODES[prepared.kind], weights.numpy(), slopes.numpy())
    else:
        weights = insert_diagonal(grad_d.to(torch.float64), start)
        slopes = weights
        if prepared.kind == "sqeuclidean":
            weights.mul_(2.0)
        elif prepared.kind == "euclidean":
            distances = insert_diagonal(d.to(torch.float64), start)
            positive = distances > 0
            weights = torch.where(positive, weights / torch.where(positive, distances, 1.0), 0.0)
            slopes = weights
        else:
            slopes = weights * insert_diagonal(1.0 - d.to(torch.float64), start)
    row_sums, column_sums = slopes.sum(dim=1), slopes.sum(dim=0)
    if cosine:
        a = prepared.norms
        live = (a > COSINE_NORM_EPS).to(torch.float64)
        row_sums = row_sums * live[start : start + c] / a[start : start + c].square()
        column_sums = column_sums * live / a.square()
        weights = weights.div_(a[start : start + c, None]).div_(a[None, :])
    return weights, row_sums, column_sums


def accumulate_gradient(
    prepared: PreparedFeatures,
    start: int,
    d: torch.Tensor,
    grad_d: torch.Tensor,
    out: torch.Tensor,
    loops: str = "torch",
) -> None:
    """Add ∂L/∂(prepared features) to ``out`` (n, p) float64, from candidate rows d (c, n − 1) of reference
    rows start … start + c − 1 and their gradient grad_d = ∂L/∂d (module docstring). ``loops``: "torch",
    or "numba" (CPU tensors: the weights in one compiled pass)."""
    f = prepared.features
    for a, b in gram_tiles(start, start + d.shape[0]):
        rows, tile = f[a:b], slice(a - start, b - start)
        weights, row_sums, column_sums = _weights(prepared, a, d[tile], grad_d[tile], loops)
        # In place, one pass over ``out`` each.
        out[a:b].addcmul_(rows, row_sums[:, None]).addmm_(weights, f, alpha=-1.0)
        out.addcmul_(f, column_sums[:, None]).addmm_(weights.T, rows, alpha=-1.0)
