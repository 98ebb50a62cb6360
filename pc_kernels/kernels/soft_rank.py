"""Fused soft ranks of one or two dissimilarity matrices (forward) and the rank gradient (backward).

Both kernels work on one reference row i per program and a tile of BLOCK_J candidates j, looping
over tiles of BLOCK_K candidates k, so nothing of size n³ ever exists. Inputs are the (m, n)
dissimilarity rows D[i − row_start, :] of reference rows i in [row_start, row_start + m), with a
zero at column i, and a per-row factor c_i = 1 / (τ (s_i + 1e-12)) that puts z_jk = c_i (D_ij − D_ik).

The k loop needs no masks on its tiles: the padded columns k >= n and the excluded column k = i
load D = +inf, whose sigmoid (and step, and slope) is exactly 0, and the other excluded term,
k = j (σ(0) = H(0) = ½), is subtracted after the loop. Accumulators are (BLOCK_J, BLOCK_K) tiles,
summed once after the loop.

Sigmoid: σ(z) = 1/(1 + e) for z >= 0 and e/(1 + e) for z < 0 with e = exp(−|z|), which never
overflows (z = ±inf included); σ'(z) = e/(1 + e)². With FAST (float32 CUDA only, opt-in) it is
σ(z) = ½ + ½ tanh(z/2) with one tanh.approx.f32 instruction (max. relative error about 2⁻¹¹).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import fast_sigmoid, interpreting

# Per-row moments the forward accumulates when it has a second side B (u = R − ½, sums over j ≠ i):
# Σ(R^A − R^B)², Σu^A, Σu^B, Σ(u^A)², Σ(u^B)², Σu^A u^B. Row ranks average exactly ½, so u is centred.
MOMENTS = 6
_MOMENTS = tl.constexpr(MOMENTS)


@triton.jit
def _rank_terms(d_j, d_k, c, HARD: tl.constexpr, SLOPE: tl.constexpr, FAST: tl.constexpr):
    """(BLOCK_J, BLOCK_K) tile of σ(z), or σ'(z) if SLOPE, for z = c·(D_ij − D_ik); the step H(D_ij − D_ik)
    (½ at 0) if HARD. Finite for every input, D_ik = +inf included (term 0). One jit call per tile:
    nested calls are what costs most under the interpreter."""
    difference = d_j[:, None] - d_k[None, :]
    if HARD:
        return tl.where(difference > 0, 1.0, tl.where(difference < 0, 0.0, 0.5)).to(difference.dtype)
    z = difference * c
    if FAST:
        t = tl.inline_asm_elementwise(
            "tanh.approx.f32 $0, $1;", "=f,f", [0.5 * z], dtype=tl.float32, is_pure=True, pack=1
        )
        if SLOPE:
            return 0.25 - 0.25 * t * t
        return 0.5 + 0.5 * t
    e = tl.exp(-tl.abs(z))
    r = 1.0 / (1.0 + e)
    if SLOPE:
        return e * r * r
    return tl.where(z >= 0, r, e * r)


# R_ij = 1/(n − 2) Σ_{k ∉ {i, j}} σ(c_i (D_ij − D_ik))  (step if HARD), for side A and, if WITH_B,
# side B in the same pass; R_ii = 0. With B, per-(row, j-tile) partial sums of MOMENTS go to sums.
@triton.jit
def _soft_rank_fwd_kernel(
    da_ptr, ca_ptr, ra_ptr, db_ptr, cb_ptr, rb_ptr, sums_ptr, n, row_start,
    HARD_A: tl.constexpr, WITH_B: tl.constexpr, HARD_B: tl.constexpr, FAST: tl.constexpr,
    BLOCK_J: tl.constexpr, BLOCK_K: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    tile = tl.program_id(1)
    i = row_start + row
    base = row * n
    j = tile * BLOCK_J + tl.arange(0, BLOCK_J)
    j_in = j < n
    dtype = da_ptr.dtype.element_ty
    da_j = tl.load(da_ptr + base + j, mask=j_in, other=0.0)
    ca = tl.load(ca_ptr + row)
    acc_a = tl.zeros([BLOCK_J, BLOCK_K], dtype=dtype)
    if WITH_B:
        db_j = tl.load(db_ptr + base + j, mask=j_in, other=0.0)
        cb = tl.load(cb_ptr + row)
        acc_b = tl.zeros([BLOCK_J, BLOCK_K], dtype=dtype)
    for k0 in range(0, n, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_used = (k < n) & (k != i)
        da_k = tl.load(da_ptr + base + k, mask=k_used, other=float("inf"))
        acc_a += _rank_terms(da_j, da_k, ca, HARD_A, False, FAST)
        if WITH_B:
            db_k = tl.load(db_ptr + base + k, mask=k_used, other=float("inf"))
            acc_b += _rank_terms(db_j, db_k, cb, HARD_B, False, FAST)
    valid = j_in & (j != i)
    ra = tl.where(valid, (tl.sum(acc_a, axis=1) - 0.5) / (n - 2), 0.0)
    tl.store(ra_ptr + base + j, ra, mask=j_in)
    if WITH_B:
        rb = tl.where(valid, (tl.sum(acc_b, axis=1) - 0.5) / (n - 2), 0.0)
        tl.store(rb_ptr + base + j, rb, mask=j_in)
        ua = (tl.where(valid, ra - 0.5, 0.0))[:, None]
        ub = (tl.where(valid, rb - 0.5, 0.0))[:, None]
        # One (BLOCK_J, 8) tile reduced once: a reduction per moment is six times the interpreter cost.
        slot = tl.arange(0, 8)[None, :]
        gap = (ra - rb)[:, None]
        terms = tl.where(slot == 0, gap * gap, tl.where(slot == 1, ua, tl.where(slot == 2, ub, 0.0)))
        terms += tl.where(slot == 3, ua * ua, tl.where(slot == 4, ub * ub, tl.where(slot == 5, ua * ub, 0.0)))
        out = sums_ptr + (row * tl.num_programs(1) + tile) * _MOMENTS + slot
        tl.store(out, tl.sum(terms, axis=0)[None, :], mask=slot < _MOMENTS)


# ∂L/∂D~_ij = 1/(τ (n − 2)) Σ_{k ∉ {i, j}} σ'(z_jk) (G_ij − G_ik),  z_jk = c_i (D_ij − D_ik),
# with G_ij / τ = a_i·P_ij + b_i·Q_ij (P, Q rank-shaped inputs; a per-row constant term cancels).
# Scalars that set the result's precision come as tensors of its dtype (a Python float is fp32 on GPU).
# k = j adds σ'(0)·0; zero at j = i. Deterministic: each output is written once, by one program.
@triton.jit
def _soft_rank_bwd_kernel(
    d_ptr, c_ptr, p_ptr, q_ptr, a_ptr, b_ptr, out_ptr, n, row_start,
    FAST: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_K: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    i = row_start + row
    base = row * n
    j = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
    j_in = j < n
    dtype = d_ptr.dtype.element_ty
    c = tl.load(c_ptr + row)
    a = tl.load(a_ptr + row)
    b = tl.load(b_ptr + row)
    d_j = tl.load(d_ptr + base + j, mask=j_in, other=0.0)
    g_j = a * tl.load(p_ptr + base + j, mask=j_in, other=0.0) + b * tl.load(q_ptr + base + j, mask=j_in, other=0.0)
    acc = tl.zeros([BLOCK_J, BLOCK_K], dtype=dtype)
    for k0 in range(0, n, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_in = k < n
        d_k = tl.load(d_ptr + base + k, mask=k_in & (k != i), other=float("inf"))
        g_k = a * tl.load(p_ptr + base + k, mask=k_in, other=0.0) + b * tl.load(q_ptr + base + k, mask=k_in, other=0.0)
        acc += _rank_terms(d_j, d_k, c, False, True, FAST) * (g_j[:, None] - g_k[None, :])
    grad = tl.sum(acc, axis=1) / (n - 2)
    tl.store(out_ptr + base + j, tl.where(j_in & (j != i), grad, 0.0), mask=j_in)


# Largest tile under the interpreter, whose cost grows with programs × k-tiles far more than with tile size.
INTERPRETER_BLOCK = 128
# On a GPU: (BLOCK_J, BLOCK_K) and warps per program, for both kernels.
GPU_BLOCKS = (64, 64)
GPU_WARPS = 4


def _blocks(d: torch.Tensor) -> tuple[int, int, int]:
    """(BLOCK_J, BLOCK_K, num_warps); under the interpreter one tile spans rows of up to INTERPRETER_BLOCK."""
    if interpreting(d):
        block = min(max(triton.next_power_of_2(d.shape[1]), 4), INTERPRETER_BLOCK)
        return block, block, 1
    return *GPU_BLOCKS, GPU_WARPS


def soft_rank_forward(
    da: torch.Tensor,
    ca: torch.Tensor,
    row_start: int,
    hard_a: bool = False,
    db: torch.Tensor | None = None,
    cb: torch.Tensor | None = None,
    hard_b: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Ranks of reference rows [row_start, row_start + m) from their dissimilarity rows.

    Args:
        da: (m, n) contiguous dissimilarities of side A (zero at column row_start + row).
        ca: (m,) per-row factors c_i = 1 / (τ (s_i + 1e-12)) of side A (ignored when hard_a).
        row_start: the batch index of da's first row.
        hard_a: step-function (exact average) ranks for side A instead of soft ones.
        db, cb, hard_b: the same for an optional side B ranked in the same pass (default: none).

    Returns:
        (R^A, R^B, moments): (m, n) rank rows with zeros at i == j; with side B also R^B and the
        (m, MOMENTS) per-row sums listed at ``MOMENTS``, else ``None`` for both.
    """
    m, n = da.shape
    block_j, block_k, warps = _blocks(da)
    tiles = triton.cdiv(n, block_j)
    ra = torch.empty_like(da)
    with_b = db is not None
    rb = torch.empty_like(db) if with_b else None
    sums = torch.empty((m, tiles, MOMENTS), dtype=da.dtype, device=da.device) if with_b else None
    _soft_rank_fwd_kernel[(m, tiles)](
        da, ca, ra, db if with_b else da, cb if with_b else ca, rb if with_b else ra, sums if with_b else ra,
        n, row_start,
        HARD_A=hard_a, WITH_B=with_b, HARD_B=hard_b, FAST=fast_sigmoid(da),
        BLOCK_J=block_j, BLOCK_K=block_k, num_warps=warps,
    )
    return ra, rb, sums.sum(dim=1) if with_b else None


def soft_rank_backward(
    d: torch.Tensor,
    c: torch.Tensor,
    p: torch.Tensor,
    q: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    row_start: int,
) -> torch.Tensor:
    """∂L/∂D~ (m, n) for ∂L/∂R = τ (a·P + b·Q) + row constants: a, b (m,) row coefficients already
    divided by τ, P and Q (m, n) contiguous; d and c as in ``soft_rank_forward``.
    """
    m, n = d.shape
    block_j, block_k, warps = _blocks(d)
    out = torch.empty_like(d)
    _soft_rank_bwd_kernel[(m, triton.cdiv(n, block_j))](
        d, c, p, q, a, b, out, n, row_start,
        FAST=fast_sigmoid(d), BLOCK_J=block_j, BLOCK_K=block_k, num_warps=warps,
    )
    return out
