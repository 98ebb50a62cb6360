"""Tiled pairwise dissimilarities of reference rows, written in the candidate layout.

One program computes a (BLOCK_I × BLOCK_J) tile of reference rows i ∈ [row_start, row_end) against
candidates j in float64 (the Gram product by ``tl.dot`` over feature tiles), applies the dissimilarity
policy's epilogue and stores each entry with j != i at column j − [j > i] of row i − row_start: the
(m, n − 1) candidate layout the rank stages read. The features arrive prepared by that policy
(``pc_kernels/stages/distances.py``: float64, median-shifted and rescaled by a power of two for the
euclidean kinds) with their squared norms, or, for cosine, their norms clamped below at 1e-8.
Its backward is the policy's matrix-product form, shared with the torch stage.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import distance_launch


# G_ij = <x_i, x_j>, then
#   KIND "euclidean":   S_ij = N_i + N_j − 2 G_ij, set to 0 if S_ij <= snap·(N_i + N_j); D_ij = √S_ij
#   KIND "sqeuclidean": D_ij = S_ij (same snap)
#   KIND "cosine":      D_ij = 1 − G_ij / (a_i a_j), a = max(‖x‖, 1e-8)
@triton.jit
def _dissimilarity_fwd_kernel(
    x_ptr,  # (n, p) float64 prepared features, row-major, contiguous
    norm_ptr,  # (n,) float64: squared norms N (euclidean kinds) or clamped norms a (cosine)
    out_ptr,  # (row_end − row_start, n − 1) output dissimilarities, candidate layout
    n,  # samples
    p,  # features per sample
    row_start,  # first reference row
    row_end,  # one past the last reference row
    snap,  # squared distances below snap·(N_i + N_j) are rounding noise: set to 0
    KIND: tl.constexpr,  # "euclidean", "sqeuclidean" or "cosine"
    BLOCK_I: tl.constexpr,  # reference rows per program
    BLOCK_J: tl.constexpr,  # candidates per program
    BLOCK_P: tl.constexpr,  # features per tl.dot step
):
    i = row_start + tl.program_id(0).to(tl.int64) * BLOCK_I + tl.arange(0, BLOCK_I)
    j = tl.program_id(1).to(tl.int64) * BLOCK_J + tl.arange(0, BLOCK_J)
    i_in = i < row_end
    j_in = j < n
    gram = tl.zeros([BLOCK_I, BLOCK_J], dtype=tl.float64)
    for f0 in range(0, p, BLOCK_P):
        f = f0 + tl.arange(0, BLOCK_P).to(tl.int64)
        f_in = f < p
        a = tl.load(x_ptr + i[:, None] * p + f[None, :], mask=i_in[:, None] & f_in[None, :], other=0.0)
        b = tl.load(x_ptr + j[:, None] * p + f[None, :], mask=j_in[:, None] & f_in[None, :], other=0.0)
        gram = tl.dot(a, tl.trans(b), gram, out_dtype=tl.float64)  # Triton 3.6 defaults out_dtype to float32
    norm_i = tl.load(norm_ptr + i, mask=i_in, other=1.0)
    norm_j = tl.load(norm_ptr + j, mask=j_in, other=1.0)
    if KIND == "cosine":
        d = 1.0 - gram / (norm_i[:, None] * norm_j[None, :])
    else:
        norms = norm_i[:, None] + norm_j[None, :]
        squared = norms - 2.0 * gram
        d = tl.where(squared > snap * norms, squared, 0.0)
        if KIND == "euclidean":
            d = tl.sqrt(d)
    column = j[None, :] - (j[None, :] > i[:, None]).to(tl.int64)
    out = out_ptr + (i[:, None] - row_start) * (n - 1) + column
    keep = i_in[:, None] & j_in[None, :] & (i[:, None] != j[None, :])
    tl.store(out, d.to(out_ptr.dtype.element_ty), mask=keep)


def dissimilarity_forward(
    features: torch.Tensor,
    norms: torch.Tensor,
    kind: str,
    row_start: int,
    row_end: int,
    snap: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    """(row_end − row_start, n − 1) candidate dissimilarities of ``dtype`` from prepared float64
    ``features`` (n, p), contiguous, and their ``norms`` (n,) (see the module docstring)."""
    n, p = features.shape
    launch = distance_launch(features)
    out = torch.empty((row_end - row_start, n - 1), dtype=dtype, device=features.device)
    grid = (triton.cdiv(row_end - row_start, launch.block_i), triton.cdiv(n, launch.block_j))
    _dissimilarity_fwd_kernel[grid](
        x_ptr=features, norm_ptr=norms, out_ptr=out, n=n, p=p, row_start=row_start, row_end=row_end, snap=snap,
        KIND=kind, BLOCK_I=launch.block_i, BLOCK_J=launch.block_j, BLOCK_P=launch.block_p,
        num_warps=launch.num_warps, num_stages=launch.num_stages,
    )  # fmt: skip
    return out
