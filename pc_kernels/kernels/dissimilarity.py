"""Tiled pairwise dissimilarity of one feature set, forward and backward.

Forward: one program per (BLOCK_I × BLOCK_J) tile of D for reference rows i in [row_start, row_end)
against every candidate j. The inner products come from ``tl.dot`` over feature tiles; the squared
norms are summed alongside, and an epilogue turns them into the requested dissimilarity.

Precision (Gram form): S_ij = N_i + N_j − 2<x_i, x_j> carries a rounding error of order
ε·(N_i + N_j) in practice (ε the unit roundoff, N the squared norms; at worst p·ε·(N_i + N_j)), against
ε·S_ij for the direct difference. The launcher first shifts the features by their coordinate-wise
median (euclidean distances do not change; see ``_prepared``), which keeps N_i of the order of
the distances themselves, and values S_ij <= snap·(N_i + N_j), snap = SNAP_ROUNDOFFS·√p·ε, are
within that noise and are set to exactly 0, so duplicate rows get D = 0 and a zero euclidean
gradient. Measured in float32 under the interpreter (n = 256, p = 256, features N(3, 1),
||x − mean|| ≈ 16): typical pairs have a relative error of at most 1.6e-7 (median 2.7e-8);
near-duplicates at distance 2.9e-3·||x − mean|| are off by about 1 %, and pairs closer than about
1.4e-3·||x − mean|| (where the unsnapped value is mostly rounding noise) read as exactly 0.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ..options import COSINE_NORM_EPS
from .launch import interpreting

KINDS = {"euclidean": 0, "sqeuclidean": 1, "cosine": 2}
_NORM_EPS = tl.constexpr(COSINE_NORM_EPS)
# Rounding errors of one inner product allowed below which a squared distance reads as zero.
SNAP_ROUNDOFFS = 2.0


# D_ij = δ(x_i, x_j) for i in [row_start, row_end), every j, zero where i == j:
#   N_i = Σ_f x_if²,  G_ij = Σ_f x_if x_jf (tl.dot),  S_ij = N_i + N_j − 2 G_ij  (0 if <= snap·(N_i + N_j))
#   KIND 0 euclidean: √S_ij    KIND 1 sqeuclidean: S_ij
#   KIND 2 cosine: 1 − G_ij / (max(√N_i, ε)·max(√N_j, ε))
@triton.jit
def _dissimilarity_fwd_kernel(
    x_ptr, out_ptr, n, p, row_start, row_end, stride_xn, stride_xp, snap,
    KIND: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_P: tl.constexpr,
):
    dtype = x_ptr.dtype.element_ty
    i = row_start + tl.program_id(0).to(tl.int64) * BLOCK_I + tl.arange(0, BLOCK_I)
    j = tl.program_id(1).to(tl.int64) * BLOCK_J + tl.arange(0, BLOCK_J)
    i_in = i < row_end
    j_in = j < n
    gram = tl.zeros([BLOCK_I, BLOCK_J], dtype=dtype)
    norm_i = tl.zeros([BLOCK_I], dtype=dtype)
    norm_j = tl.zeros([BLOCK_J], dtype=dtype)
    for f0 in range(0, p, BLOCK_P):
        f = f0 + tl.arange(0, BLOCK_P).to(tl.int64)
        f_in = f < p
        columns = f[None, :] * stride_xp
        a = tl.load(x_ptr + i[:, None] * stride_xn + columns, mask=i_in[:, None] & f_in[None, :], other=0.0)
        b = tl.load(x_ptr + j[:, None] * stride_xn + columns, mask=j_in[:, None] & f_in[None, :], other=0.0)
        gram = tl.dot(a, tl.trans(b), gram, input_precision="ieee")
        norm_i += tl.sum(a * a, axis=1)
        norm_j += tl.sum(b * b, axis=1)
    if KIND == 2:
        scale_i = tl.maximum(tl.sqrt(norm_i), _NORM_EPS)
        scale_j = tl.maximum(tl.sqrt(norm_j), _NORM_EPS)
        d = 1.0 - gram / (scale_i[:, None] * scale_j[None, :])
    else:
        norms = norm_i[:, None] + norm_j[None, :]
        squared = norms - 2.0 * gram
        d = tl.where(squared > snap * norms, squared, 0.0)
        if KIND == 0:
            d = tl.sqrt(d)
    d = tl.where(i[:, None] == j[None, :], 0.0, d)
    out = out_ptr + (i[:, None] - row_start) * n + j[None, :]
    tl.store(out, d, mask=i_in[:, None] & j_in[None, :])


# Backward, one program per (BLOCK_R rows r of x) × (BLOCK_P features), summing over every j ≠ r:
#   γ_rj = ∂L/∂D_rj (r a reference row) + ∂L/∂D_jr (j a reference row)     (D symmetric)
#   ∂L/∂x_r = x_r Σ_j e_rj − Σ_j w_rj x_j   (the second sum by tl.dot) with
#   euclidean: w = e = γ/D (0 where D = 0)   sqeuclidean: w = e = 2γ
#   cosine:    w = γ/(a_r a_j), e = γ (1 − D)/a_r² (0 where ||x_r|| <= ε),  a = max(||x||, ε)
@triton.jit
def _dissimilarity_bwd_kernel(
    x_ptr, d_ptr, grad_d_ptr, norm_ptr, out_ptr, n, p, row_start, row_end, stride_xn, stride_xp,
    KIND: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_P: tl.constexpr,
):
    dtype = x_ptr.dtype.element_ty
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    f = tl.program_id(1).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    r_in = r < n
    f_in = f < p
    r_ref = (r >= row_start) & (r < row_end)
    columns = f[None, :] * stride_xp
    if KIND == 2:
        norm_r = tl.load(norm_ptr + r, mask=r_in, other=1.0)
        scale_r = tl.maximum(norm_r, _NORM_EPS)
    acc = tl.zeros([BLOCK_R, BLOCK_P], dtype=dtype)
    diagonal = tl.zeros([BLOCK_R], dtype=dtype)
    for j0 in range(0, n, BLOCK_J):
        j = j0 + tl.arange(0, BLOCK_J).to(tl.int64)
        j_in = j < n
        j_ref = (j >= row_start) & (j < row_end)
        off_diagonal = r[:, None] != j[None, :]
        as_row = r_ref[:, None] & j_in[None, :] & off_diagonal
        as_column = j_ref[None, :] & r_in[:, None] & off_diagonal
        row_offsets = (r[:, None] - row_start) * n + j[None, :]
        column_offsets = (j[None, :] - row_start) * n + r[:, None]
        gamma = tl.load(grad_d_ptr + row_offsets, mask=as_row, other=0.0) + tl.load(
            grad_d_ptr + column_offsets, mask=as_column, other=0.0
        )
        d = tl.where(
            r_ref[:, None],
            tl.load(d_ptr + row_offsets, mask=as_row, other=0.0),
            tl.load(d_ptr + column_offsets, mask=as_column, other=0.0),
        )
        if KIND == 0:
            w = tl.where(d > 0, gamma / tl.where(d > 0, d, 1.0), 0.0)
            e = w
        elif KIND == 1:
            w = 2.0 * gamma
            e = w
        else:
            scale_j = tl.maximum(tl.load(norm_ptr + j, mask=j_in, other=1.0), _NORM_EPS)
            w = gamma / (scale_r[:, None] * scale_j[None, :])
            live_r = (norm_r > _NORM_EPS)[:, None]
            e = tl.where(live_r, gamma * (1.0 - d) / (scale_r * scale_r)[:, None], 0.0)
        diagonal += tl.sum(e, axis=1)
        x_j = tl.load(x_ptr + j[:, None] * stride_xn + columns, mask=j_in[:, None] & f_in[None, :], other=0.0)
        acc = tl.dot(w, x_j, acc, input_precision="ieee")
    x_r = tl.load(x_ptr + r[:, None] * stride_xn + columns, mask=r_in[:, None] & f_in[None, :], other=0.0)
    grad = x_r * diagonal[:, None] - acc
    tl.store(out_ptr + r[:, None] * p + f[None, :], grad, mask=r_in[:, None] & f_in[None, :])


def _prepared(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The features the kernels read, (n, p).

    For the (translation-invariant) euclidean kinds, x minus its coordinate-wise median: the
    common offset, which would dominate the Gram form's rounding error, is gone, and since each
    coordinate is shifted by one of its own values, data on a grid (integers, values upcast from
    float16) shift exactly and keep their exact ties.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(repr(k) for k in KINDS)}; got {kind!r}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64 (fp16/bf16 are upcast by the caller); got {x.dtype}")
    return x if kind == "cosine" else x - x.median(dim=0).values


# On a GPU: (rows, candidates, features) per tile, the backward's largest feature tile, and its
# software-pipelining depth per dtype (3 stages of float64 euclidean tiles would need more shared
# memory than an H100 block has: 353 KiB against 227 KiB).
GPU_BLOCKS = (64, 64, 32)
GPU_BACKWARD_MAX_BLOCK_P = 64
GPU_BACKWARD_STAGES = {torch.float32: 2, torch.float64: 1}


def _blocks(x: torch.Tensor) -> tuple[int, int, int]:
    """(rows, candidates, features) per tile: tl.dot needs >= 16; small tiles keep the interpreter fast."""
    if interpreting(x):
        return 16, 16, 16
    return GPU_BLOCKS


def dissimilarity_forward(x: torch.Tensor, kind: str, row_start: int, row_end: int) -> torch.Tensor:
    """D[i − row_start, j] = δ(x_i, x_j) for rows i in [row_start, row_end) of x (n, p); zero at i == j.

    Returns a new contiguous (row_end − row_start, n) tensor of x's dtype (float32 or float64).
    """
    xs = _prepared(x, kind)
    n, p = xs.shape
    out = torch.empty((row_end - row_start, n), dtype=xs.dtype, device=xs.device)
    block_i, block_j, block_p = _blocks(xs)
    snap = SNAP_ROUNDOFFS * math.sqrt(p) * torch.finfo(xs.dtype).eps
    grid = (triton.cdiv(row_end - row_start, block_i), triton.cdiv(n, block_j))
    _dissimilarity_fwd_kernel[grid](
        xs, out, n, p, row_start, row_end, xs.stride(0), xs.stride(1), snap,
        KIND=KINDS[kind], BLOCK_I=block_i, BLOCK_J=block_j, BLOCK_P=block_p,
    )
    return out


def dissimilarity_backward(
    grad_d: torch.Tensor, x: torch.Tensor, d: torch.Tensor, kind: str, row_start: int
) -> torch.Tensor:
    """∂L/∂x (n, p) from grad_d = ∂L/∂D and D, both (m, n) contiguous for rows [row_start, row_start + m)."""
    xs = _prepared(x, kind)
    n, p = xs.shape
    row_end = row_start + d.shape[0]
    # Feature norms for cosine; the other kinds never read norm_ptr (any valid pointer will do).
    norms = torch.linalg.vector_norm(xs, dim=1) if kind == "cosine" else xs
    out = torch.empty((n, p), dtype=xs.dtype, device=xs.device)
    block_r, block_j, _ = _blocks(xs)
    block_p = min(max(triton.next_power_of_2(p), 16), GPU_BACKWARD_MAX_BLOCK_P)
    grid = (triton.cdiv(n, block_r), triton.cdiv(p, block_p))
    _dissimilarity_bwd_kernel[grid](
        xs, d, grad_d, norms, out, n, p, row_start, row_end, xs.stride(0), xs.stride(1),
        KIND=KINDS[kind], BLOCK_R=block_r, BLOCK_J=block_j, BLOCK_P=block_p,
        num_stages=GPU_BACKWARD_STAGES[xs.dtype],
    )
    return out
