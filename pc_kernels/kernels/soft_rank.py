"""Soft ranks of candidate rows (forward) and their gradient (backward), one reference row per program.

Both kernels read rows in the *candidate layout*: row r of an (m, w) tensor holds the w = n − 1
dissimilarities d_j of one reference sample to its candidates j (the reference itself removed), and a
per-row factor c_r > 0 that puts the sigmoid's argument in units of τ: z_jk = c_r (d_j − d_k). A program
owns a tile of BLOCK_J candidates j and loops over tiles of BLOCK_K candidates k, accumulating a
(BLOCK_J, BLOCK_K) tile that is summed once after the loop, so nothing of size n³ ever exists. The
sigmoid takes its argument scaled (``sigmoid.py``): a program multiplies c_r by the form's scale once
and evaluates σ at t_jk = (c_r·SCALE)(d_j − d_k).

Each kernel has two forms (constexpr ``SEPARABLE``). For float32 with the accurate sigmoid both are launched,
one after the other, over every row: the separable form takes the rows ``separable.py`` finds within its
spread and evaluates σ = 1/(1 + A_j·B_k) from the row's factors A and B, the per-pair form the other rows; for
float64 or the fast sigmoid the per-pair form takes every row. A program whose row belongs to the other form
stores nothing and ends after reading its row's flag.

Padded candidates k >= w load d_k = +inf (σ and σ' exactly 0, z = −inf), or in the separable form B_k = +inf
(σ = 1/inf = 0) forward and B_k = 0 (σ' = 0) backward, so the loop needs no mask on its tile. The k = j term
(σ(0) = ½, σ'(0)·0 = 0) is removed after the loop (in the separable form σ_jj is ½ within a few ulp, see
``sigmoid.py``). The difference is taken before the factor is applied, so a factor as large as the dtype allows
(tiny τ) gives ±inf for distinct values and 0 for ties, never NaN.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import rank_launch
from .separable import separable_rows
from .sigmoid import ACCURATE_SCALE, FAST_SCALE, separable_sigmoid, separable_sigmoid_slope, sigmoid, sigmoid_slope


@triton.jit
def _scaled_factor(factor_ptr, FAST: tl.constexpr):
    """The row's factor times the sigmoid's scale. The pipeline clamps factors into [4·tiny, max/4] of their
    dtype (``stages/row_scale.py``), so a scale within [¼, 4] neither overflows nor underflows: no guard."""
    c = tl.load(factor_ptr)
    return c * FAST_SCALE if FAST else c * ACCURATE_SCALE


@triton.jit
def _is_form(separable_ptr, SEPARABLE: tl.constexpr):
    """Whether the row's form (its flag: 1 separable, 0 per pair) is the program's."""
    return tl.load(separable_ptr) == (1 if SEPARABLE else 0)


@triton.jit
def _row_tile(d_ptr, factor_ptr, a_ptr, row, w, FAST: tl.constexpr, SEPARABLE: tl.constexpr, BLOCK_J: tl.constexpr):
    """The program's row offset, candidates j and which of them are real, the row's scaled factor, and what
    the form pairs with every k: A_j (separable) or d_j."""
    base = row * w
    j = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
    j_in = j < w
    c = _scaled_factor(factor_ptr + row, FAST)
    if SEPARABLE:
        return base, j, j_in, c, tl.load(a_ptr + base + j, mask=j_in, other=1.0)
    return base, j, j_in, c, tl.load(d_ptr + base + j, mask=j_in, other=0.0)


# R_rj = (Σ_{k < w} σ(c_r (d_rj − d_rk)) − ½) / (w − 1)
@triton.jit
def _soft_rank_fwd_kernel(
    d_ptr,  # (m, w) candidate dissimilarities, row-major, contiguous
    factor_ptr,  # (m,) per-row factors c_r > 0
    separable_ptr,  # (m,) int8 per-row form: 1 separable, 0 per pair (separable.py)
    a_ptr,  # (m, w) factors A of the separable form (read by it only)
    b_ptr,  # (m, w) factors B of the separable form (read by it only)
    ranks_ptr,  # (m, w) output soft ranks R
    w,  # candidates per row, n − 1 >= 2
    FAST: tl.constexpr,  # tanh.approx sigmoid (float32 on CUDA only)
    SEPARABLE: tl.constexpr,  # the separable form, on the rows flagged 1 (float32, accurate sigmoid)
    BLOCK_J: tl.constexpr,  # candidates j per program
    BLOCK_K: tl.constexpr,  # candidates k per loop step
):
    row = tl.program_id(0).to(tl.int64)
    if _is_form(separable_ptr + row, SEPARABLE):
        base, j, j_in, c, x_j = _row_tile(d_ptr, factor_ptr, a_ptr, row, w, FAST, SEPARABLE, BLOCK_J)
        acc = tl.zeros([BLOCK_J, BLOCK_K], dtype=d_ptr.dtype.element_ty)
        for k0 in range(0, w, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            if SEPARABLE:  # x_j = A_j, B_k
                b_k = tl.load(b_ptr + base + k, mask=k < w, other=float("inf"))
                acc += separable_sigmoid(x_j[:, None], b_k[None, :])
            else:  # x_j = d_j
                d_k = tl.load(d_ptr + base + k, mask=k < w, other=float("inf"))
                acc += sigmoid(c * (x_j[:, None] - d_k[None, :]), FAST)
        ranks = (tl.sum(acc, axis=1) - 0.5) / (w - 1)
        tl.store(ranks_ptr + base + j, ranks, mask=j_in)


# ∂L/∂y_rj = Σ_{k < w} σ'(c_r (d_rj − d_rk)) (G_rj − G_rk) / (w − 1),   y = c·d,  G = ∂L/∂R
# (the gradient of docs/spec.md in units of τ; the k = j term is σ'(0)·0). Each output is written once, by one program.
@triton.jit
def _soft_rank_bwd_kernel(
    d_ptr,  # (m, w) candidate dissimilarities, row-major, contiguous
    factor_ptr,  # (m,) per-row factors c_r > 0
    separable_ptr,  # (m,) int8 per-row form: 1 separable, 0 per pair (separable.py)
    a_ptr,  # (m, w) factors A of the separable form (read by it only)
    b_ptr,  # (m, w) factors B of the separable form (read by it only)
    grad_ranks_ptr,  # (m, w) G = ∂L/∂R, contiguous
    out_ptr,  # (m, w) output ∂L/∂y
    w,  # candidates per row, n − 1 >= 2
    FAST: tl.constexpr,  # tanh.approx sigmoid (float32 on CUDA only)
    SEPARABLE: tl.constexpr,  # the separable form, on the rows flagged 1 (float32, accurate sigmoid)
    BLOCK_J: tl.constexpr,  # candidates j per program
    BLOCK_K: tl.constexpr,  # candidates k per loop step
):
    row = tl.program_id(0).to(tl.int64)
    if _is_form(separable_ptr + row, SEPARABLE):
        base, j, j_in, c, x_j = _row_tile(d_ptr, factor_ptr, a_ptr, row, w, FAST, SEPARABLE, BLOCK_J)
        g_j = tl.load(grad_ranks_ptr + base + j, mask=j_in, other=0.0)
        acc = tl.zeros([BLOCK_J, BLOCK_K], dtype=d_ptr.dtype.element_ty)
        for k0 in range(0, w, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            k_in = k < w
            g_k = tl.load(grad_ranks_ptr + base + k, mask=k_in, other=0.0)
            if SEPARABLE:  # x_j = A_j, B_k
                b_k = tl.load(b_ptr + base + k, mask=k_in, other=0.0)
                slope = separable_sigmoid_slope(x_j[:, None], b_k[None, :])
            else:  # x_j = d_j
                d_k = tl.load(d_ptr + base + k, mask=k_in, other=float("inf"))
                slope = sigmoid_slope(c * (x_j[:, None] - d_k[None, :]), FAST)
            acc += slope * (g_j[:, None] - g_k[None, :])
        tl.store(out_ptr + base + j, tl.sum(acc, axis=1) / (w - 1), mask=j_in)


Form = tuple[bool, torch.Tensor, torch.Tensor, torch.Tensor]


def _forms(d: torch.Tensor, factor: torch.Tensor, fast: bool) -> list[Form]:
    """(SEPARABLE, row flags, factors A, factors B) of each launch: the separable form, then the per-pair form
    (float32, accurate sigmoid); else the per-pair form alone on every row (d passed for the A and B it does not
    read)."""
    if fast or d.dtype != torch.float32:
        return [(False, torch.zeros(d.shape[0], dtype=torch.int8, device=d.device), d, d)]
    separable, a, b = separable_rows(d, factor)
    return [(True, separable, a, b), (False, separable, a, b)]


def soft_rank_forward(d: torch.Tensor, factor: torch.Tensor, fast: bool) -> torch.Tensor:
    """Soft ranks R (m, w) of candidate rows d (m, w), contiguous, with factors (m,) of d's dtype."""
    m, w = d.shape
    launch = rank_launch(d, w)
    ranks = torch.empty_like(d)
    for separable, flags, a, b in _forms(d, factor, fast):
        _soft_rank_fwd_kernel[(m, triton.cdiv(w, launch.block_j))](
            d_ptr=d, factor_ptr=factor, separable_ptr=flags, a_ptr=a, b_ptr=b, ranks_ptr=ranks, w=w, FAST=fast,
            SEPARABLE=separable, BLOCK_J=launch.block_j, BLOCK_K=launch.block_k, num_warps=launch.num_warps,
        )  # fmt: skip
    return ranks


def soft_rank_backward(d: torch.Tensor, factor: torch.Tensor, grad_ranks: torch.Tensor, fast: bool) -> torch.Tensor:
    """∂L/∂y (m, w), y = factor·d, from G = ∂L/∂R (m, w); all contiguous, of d's dtype."""
    m, w = d.shape
    launch = rank_launch(d, w)
    out = torch.empty_like(d)
    for separable, flags, a, b in _forms(d, factor, fast):
        _soft_rank_bwd_kernel[(m, triton.cdiv(w, launch.block_j))](
            d_ptr=d, factor_ptr=factor, separable_ptr=flags, a_ptr=a, b_ptr=b, grad_ranks_ptr=grad_ranks,
            out_ptr=out, w=w, FAST=fast, SEPARABLE=separable, BLOCK_J=launch.block_j, BLOCK_K=launch.block_k,
            num_warps=launch.num_warps,
        )  # fmt: skip
    return out
