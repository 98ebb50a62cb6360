"""The grid passes of the binned rank stage: fixed-point deposits, the exact sign part and the read-back.

The math is that of ``pc_kernels/stages/binned_ranks.py`` (its module docstring derives it and its error
bound); the FFT convolution between these kernels stays with torch (cuFFT). Row r of an (m, w) block holds
w points; a point's grid coordinate is u = (d_j − low_r)·p_r + 1 (``AFFINE``: from the dissimilarities d
and the row's minimum) or u = o_j·p_r + 1 (from gap-closed offsets o), p_r the nodes per unit. Its left node
is a = ⌊u⌋ clamped to 1 … nodes − 3, f = u − a, and its cubic Lagrange weights ℓ_{−1} … ℓ_2 at f.

Deposits are int64 fixed point: a point of weight v (v = scale_r for the ones set, G_j·scale_r for the
weighted set) puts round(v·ℓ_s) on node a + s for s = −1, 1, 2 and the remainder round(v) − Σ of those on
node a, so its taps sum exactly to round(v). They are added with integer atomics, whose sums do not
depend on the order of the additions: a row's masses are bitwise the same whatever the launch, block or
process that computes them. Rounding is to nearest, ties to even (torch.round's rule): one conversion
instruction on a GPU; under the interpreter by adding and subtracting 2^52 (exact for |x| < 2^52; larger
float64 values are integers already).

One program handles BLOCK points of one row (deposit, read-back) or one whole row of nodes (sign part).
Every offset into an (m, ·) tensor is int64.
"""

from __future__ import annotations

import types

import torch
import triton
import triton.language as tl

from ..stages.binned_ranks import cubic_basis
from .launch import binned_launch

_INTERPRETING = tl.constexpr(triton.knobs.runtime.interpret)
_ROUNDING = tl.constexpr(4503599627370496.0)  # 2^52: the float64 ulp is 1 from here on
# The shared basis compiled by Triton, bound to this module's globals: the interpreter finds triton.language there.
_cubic_basis = triton.jit(types.FunctionType(cubic_basis.__code__, globals(), "cubic_basis"))


@triton.jit
def _round_to_integer(x):
    """round(x), ties to even, as int64, for float64 x with |x| < 2^62: one ``cvt.rni.s64.f64`` on a GPU."""
    if _INTERPRETING:
        rounded = tl.where(x >= 0, (x + _ROUNDING) - _ROUNDING, (x - _ROUNDING) + _ROUNDING)
        return tl.where(tl.abs(x) < _ROUNDING, rounded, x).to(tl.int64)
    return tl.inline_asm_elementwise("cvt.rni.s64.f64 $0, $1;", "=l,d", [x], dtype=tl.int64, is_pure=True, pack=1)


@triton.jit
def _grid_position(points_ptr, low_ptr, per_node_ptr, row, j, j_in, w, nodes, AFFINE: tl.constexpr):
    """Left node a (int64) and the cubic Lagrange weights ℓ_{−1}, ℓ_0, ℓ_1, ℓ_2 (float64) of points j of a row."""
    position = tl.load(points_ptr + row * w + j, mask=j_in, other=0.0).to(tl.float64)
    if AFFINE:
        position = position - tl.load(low_ptr + row)
    position = tl.where(j_in, position, 0.0)  # padded points at the row's start: node 1, finite weights
    u = position * tl.load(per_node_ptr + row) + 1.0
    a = tl.minimum(tl.maximum(tl.floor(u), 1.0), (nodes - 3).to(tl.float64))
    f = u - a
    basis_left, basis_node, basis_right, basis_far = _cubic_basis(f)
    return a.to(tl.int64), basis_left, basis_node, basis_right, basis_far


@triton.jit
def _deposit_point(row_ptr, a, value, basis_left, basis_right, basis_far):
    """Add round(v·ℓ) on nodes a − 1, a + 1, a + 2 and the remainder on node a of one row's masses. Padded
    points carry v = 0 at node a = 1: they add zeros to real nodes, so the atomics need no mask (a masked
    atomic compiles to a branch around it)."""
    left = _round_to_integer(value * basis_left)
    right = _round_to_integer(value * basis_right)
    far = _round_to_integer(value * basis_far)
    tl.atomic_add(row_ptr + a - 1, left, sem="relaxed")
    tl.atomic_add(row_ptr + a, _round_to_integer(value) - left - right - far, sem="relaxed")
    tl.atomic_add(row_ptr + a + 1, right, sem="relaxed")
    tl.atomic_add(row_ptr + a + 2, far, sem="relaxed")


# fixed[0, r, a_j + s] += round(scale[0, r]·ℓ_s(f_j))
# WEIGHTED: also fixed[1, r, a_j + s] += round(G_rj·scale[1, r]·ℓ_s(f_j))   (node a_j takes each point's remainder)
@triton.jit
def _grid_deposit_kernel(
    points_ptr,  # (m, w) positions: dissimilarities d (AFFINE) or gap-closed offsets o (float64), contiguous
    low_ptr,  # (m,) float64 row minimum of d (read only with AFFINE)
    per_node_ptr,  # (m,) float64 grid coordinates per unit of d or o
    weights_ptr,  # (m, w) weights G of the second set, contiguous (read only with WEIGHTED)
    scale_ptr,  # (sets, m) float64 fixed-point scale of each set and row
    fixed_ptr,  # (sets, m, nodes) int64 masses, zeroed by the caller, added to
    m,  # rows
    w,  # points per row
    nodes,  # grid nodes per row
    AFFINE: tl.constexpr,  # positions from d and the row minimum (else from offsets)
    WEIGHTED: tl.constexpr,  # deposit the weighted set too
    BLOCK: tl.constexpr,  # points per program
):
    row = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    j_in = j < w
    a, left, _, right, far = _grid_position(points_ptr, low_ptr, per_node_ptr, row, j, j_in, w, nodes, AFFINE)
    unit = tl.where(j_in, tl.load(scale_ptr + row), 0.0)
    _deposit_point(fixed_ptr + row * nodes, a, unit, left, right, far)
    if WEIGHTED:
        weights = tl.load(weights_ptr + row * w + j, mask=j_in, other=0.0).to(tl.float64)
        value = weights * tl.load(scale_ptr + m + row)
        _deposit_point(fixed_ptr + (m + row) * nodes, a, value, left, right, far)


# values[r, a] += (2 P_a − m_a − P_last) / (2 scale_r),  P_a = Σ_{b <= a} m_b (int64, exact): ½ Σ_b m_b sign(a − b)
@triton.jit
def _sign_part_kernel(
    fixed_ptr,  # (m, nodes) int64 masses of the ones set, contiguous
    scale_ptr,  # (m,) float64 fixed-point scale of each row
    values_ptr,  # (m, length) float64 smoothed node values, length >= nodes; nodes 0 … nodes − 1 added to
    nodes,  # grid nodes per row
    length,  # row stride of values (the FFT length)
    NODE_BLOCK: tl.constexpr,  # nodes per loop step
):
    row = tl.program_id(0).to(tl.int64)
    masses_row = fixed_ptr + row * nodes
    values_row = values_ptr + row * length
    total = tl.zeros([NODE_BLOCK], dtype=tl.int64)
    for b0 in range(0, nodes, NODE_BLOCK):
        b = b0 + tl.arange(0, NODE_BLOCK)
        total += tl.load(masses_row + b, mask=b < nodes, other=0)
    last = tl.sum(total, axis=0)
    half_per_unit = 0.5 / tl.load(scale_ptr + row)  # exact: the ones set's scale is a power of two
    carry = tl.zeros([], dtype=tl.int64)
    for b0 in range(0, nodes, NODE_BLOCK):
        b = b0 + tl.arange(0, NODE_BLOCK)
        b_in = b < nodes
        masses = tl.load(masses_row + b, mask=b_in, other=0)
        prefix = carry + tl.cumsum(masses, axis=0)
        sign_part = (2 * prefix - masses - last).to(tl.float64) * half_per_unit
        smoothed = tl.load(values_row + b, mask=b_in, other=0.0)
        tl.store(values_row + b, smoothed + sign_part, mask=b_in)
        carry += tl.sum(masses, axis=0)


@triton.jit
def _interpolate(values_row, a, basis_left, basis_node, basis_right, basis_far, mask):
    """Σ_s ℓ_s values[a + s], s = −1 … 2: the cubic read-back of one row's node values at its points."""
    total = tl.load(values_row + a - 1, mask=mask, other=0.0) * basis_left
    total += tl.load(values_row + a, mask=mask, other=0.0) * basis_node
    total += tl.load(values_row + a + 1, mask=mask, other=0.0) * basis_right
    return total + tl.load(values_row + a + 2, mask=mask, other=0.0) * basis_far


# GRADIENT False: out_rj = ½ + S_0(y_j) / (w − 1)            (soft ranks; S_0 read from values[0], sign part included)
# GRADIENT True:  out_rj = (G_rj S_0(y_j) − S_1(y_j)) / (w − 1)   (∂L/∂y; S_0 = A, S_1 = B read from values[0], [1])
@triton.jit
def _grid_read_kernel(
    points_ptr,  # (m, w) positions: dissimilarities d (AFFINE) or gap-closed offsets o (float64), contiguous
    low_ptr,  # (m,) float64 row minimum of d (read only with AFFINE)
    per_node_ptr,  # (m,) float64 grid coordinates per unit of d or o
    values_ptr,  # (sets, m, length) float64 node values of each set (nodes 0 … nodes − 1 read)
    weights_ptr,  # (m, w) G = ∂L/∂R, contiguous (read only with GRADIENT)
    out_ptr,  # (m, w) output: soft ranks, or ∂L/∂y with GRADIENT
    m,  # rows
    w,  # points per row
    nodes,  # grid nodes per row
    length,  # row stride of values (the FFT length)
    AFFINE: tl.constexpr,  # positions from d and the row minimum (else from offsets)
    GRADIENT: tl.constexpr,  # read both sets and form ∂L/∂y (else the soft ranks)
    BLOCK: tl.constexpr,  # points per program
):
    row = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    j_in = j < w
    a, left, node, right, far = _grid_position(points_ptr, low_ptr, per_node_ptr, row, j, j_in, w, nodes, AFFINE)
    first = _interpolate(values_ptr + row * length, a, left, node, right, far, j_in)
    per_pair = 1.0 / (w - 1).to(tl.float64)  # once per program: a division is a call on a GPU
    if GRADIENT:
        second = _interpolate(values_ptr + (m + row) * length, a, left, node, right, far, j_in)
        weights = tl.load(weights_ptr + row * w + j, mask=j_in, other=0.0).to(tl.float64)
        out = (weights * first - second) * per_pair
    else:
        out = first * per_pair + 0.5
    tl.store(out_ptr + row * w + j, out.to(out_ptr.dtype.element_ty), mask=j_in)


class GridRows:
    """The per-row geometry every grid kernel reads: positions (m, w) (d, or float64 gap-closed offsets when
    ``affine`` is False), row minima ``low`` (m,) float64 (used when ``affine``), grid coordinates per unit
    ``per_node`` (m,) float64, and ``nodes`` per row; all contiguous, on one device."""

    def __init__(self, points: torch.Tensor, low: torch.Tensor, per_node: torch.Tensor, affine: bool, nodes: int):
        self.points, self.low, self.per_node = points.contiguous(), low.contiguous(), per_node.contiguous()
        self.affine, self.nodes = affine, nodes

    @property
    def shape(self) -> tuple[int, int]:
        return self.points.shape[0], self.points.shape[1]


def grid_deposit(rows: GridRows, weights: torch.Tensor | None, scale: torch.Tensor, fixed: torch.Tensor) -> None:
    """Add to ``fixed`` (sets, m, nodes) int64, contiguous, the fixed-point masses of the ones set and, if
    ``weights`` (m, w) are given, the weighted set, with float64 ``scale`` (sets, m) (module docstring)."""
    m, w = rows.shape
    launch = binned_launch(rows.points, w)
    _grid_deposit_kernel[(m, triton.cdiv(w, launch.block))](
        points_ptr=rows.points, low_ptr=rows.low, per_node_ptr=rows.per_node,
        weights_ptr=rows.points if weights is None else weights.contiguous(), scale_ptr=scale.contiguous(),
        fixed_ptr=fixed, m=m, w=w, nodes=rows.nodes,
        AFFINE=rows.affine, WEIGHTED=weights is not None, BLOCK=launch.block, num_warps=launch.num_warps,
    )  # fmt: skip


def add_sign_part(fixed: torch.Tensor, scale: torch.Tensor, values: torch.Tensor) -> None:
    """Add ½ Σ_b m_b sign(a − b) of the int64 masses ``fixed`` (m, nodes), in units of ``scale`` (m,) float64,
    to nodes a of ``values`` (m, length) float64, in place."""
    m, nodes = fixed.shape
    launch = binned_launch(values, nodes)
    _sign_part_kernel[(m,)](
        fixed_ptr=fixed, scale_ptr=scale.contiguous(), values_ptr=values, nodes=nodes, length=values.shape[1],
        NODE_BLOCK=launch.node_block, num_warps=launch.num_warps,
    )  # fmt: skip


def grid_read(
    rows: GridRows, values: torch.Tensor, grad_ranks: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """Soft ranks (m, w) read back from node values (1, m, length), or with ``grad_ranks`` G (m, w) ∂L/∂y
    from the sets A, B (2, m, length); float64 values, output of ``dtype``."""
    m, w = rows.shape
    launch = binned_launch(rows.points, w)
    out = torch.empty((m, w), dtype=dtype, device=rows.points.device)
    _grid_read_kernel[(m, triton.cdiv(w, launch.block))](
        points_ptr=rows.points, low_ptr=rows.low, per_node_ptr=rows.per_node, values_ptr=values.contiguous(),
        weights_ptr=rows.points if grad_ranks is None else grad_ranks.contiguous(), out_ptr=out,
        m=m, w=w, nodes=rows.nodes, length=values.shape[2],
        AFFINE=rows.affine, GRADIENT=grad_ranks is not None, BLOCK=launch.block, num_warps=launch.num_warps,
    )  # fmt: skip
    return out
