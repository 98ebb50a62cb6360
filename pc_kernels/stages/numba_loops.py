"""Numba-compiled loops for the stages on CPU tensors: one pass over each block where torch needs several.

Each function computes what the torch code it replaces computes, with the same operations in the same
order (the int64 grid deposits come out identical; sums may differ in the last bit where torch fuses a
multiply-add), one reference row per parallel iteration. Where the contract needs exact results (the
distances, whose ties must stay ties, and the grid positions), a loop uses only +, −, ×, / and
comparisons, which IEEE 754 rounds correctly and numba never contracts into fused multiply-adds (it
compiles without fast-math flags), so they come out the same on any x86-64 CPU: the euclidean square
root is left to torch, because LLVM may vectorize a loop's square roots into calls to a vector math
library (Intel's SVML, in llvmlite builds that link it) that are not correctly rounded, and a vector
body next to a scalar remainder would then give equal squares unequal roots.
tests/test_cpu_portability.py checks the compiled code for every x86-64 target it names.

    distance_rows      the dissimilarity policy's epilogue: Gram rows → candidate dissimilarities
                       (stages/distances.py, ``_square_rows`` + ``drop_diagonal``)
    distance_weights   the weights W (and cosine's slopes) of the dissimilarity backward, diagonal inserted
                       (stages/distances.py, ``accumulate_gradient``)
    row_statistics     each row's mean, population standard deviation, minimum and maximum, in float64
                       (stages/row_scale.py)
    row_largest        each row's largest |value| (stages/binned_ranks.py, the fixed-point scale)
    deposit            cubic Lagrange deposits in int64 fixed point (stages/binned_ranks.py, ``_deposit``)
    read_ranks         the exact sign part, the cubic read-back and the soft ranks (stages/binned_ranks.py)
    read_gradient      the cubic read-back of the backward's two sums and ∂L/∂y (stages/binned_ranks.py)
    row_scale_backward ∂L/∂d from ∂L/∂y through the row scale (stages/row_scale.py)

Each runs on as many threads as torch's intra-op pool (``torch.get_num_threads()``, at most numba's own
pool), so ``torch.set_num_threads`` governs the whole loss, and numba's setting, which is per calling
thread, is restored after the call. With one torch thread a loop runs its serial compilation, so numba's
thread team (which wakes every worker for each loop even when told to use one) never starts. Left at
numba's default (every core) while torch ran on fewer, the loops' idle workers spun against the caller's
other threads: a 128-sample training step with torch on 1 thread took 64 ms instead of 12 ms on a busy
2-core machine.

Compilation. Both compilations of every loop are cached on disk by ``numba_cache.py``, whose key covers
the functions and constants of other modules a loop compiles (numba's own cache tracks this file only):
the first process compiles a loop on its first call, later ones load it.

Threading layer. GNU OpenMP, numba's default layer when TBB is not installed, is not fork-safe: a process
forked after numba's OpenMP thread team started aborts on its first parallel loop ("fork() called from a
process already using GNU OpenMP"), and torch's own OpenMP regions hang in it, as the team shares torch's
libgomp; torch's DataLoader workers are forked by default. So, unless the process chose a layer itself
(``NUMBA_THREADING_LAYER`` set to a layer, or ``numba.config.THREADING_LAYER`` changed from "default"
before this module's first import), importing this module sets numba's documented "forksafe" choice: TBB if installed,
else an OpenMP other than GNU's, else numba's own workqueue. This is process-wide (numba has one layer per
process) and documented in docs/troubleshooting.md. The workqueue runs one parallel loop at a time, so a
loop called while another thread's runs takes its serial compilation.

Imported only by the stages' numba implementations (``registry.py``), which the plan chooses for CPU
tensors with numba installed; the torch implementations are the fallback.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable

import numba
import numpy as np
import torch

from .binned_ranks import cubic_basis
from .numba_cache import enable_cache
from .row_scale import std_coefficient

EUCLIDEAN, SQEUCLIDEAN, COSINE = 0, 1, 2
DISSIMILARITY_CODES = {"euclidean": EUCLIDEAN, "sqeuclidean": SQEUCLIDEAN, "cosine": COSINE}

if numba.config.THREADING_LAYER == "default":  # NUMBA_THREADING_LAYER unset, no layer chosen in code
    numba.config.THREADING_LAYER = "forksafe"

# One parallel loop at a time: the workqueue layer aborts on concurrent ones.
_parallel_loop = threading.Lock()


class _Loop:
    """A loop compiled twice, in parallel (over ``numba.prange``) and serially, each cached on disk
    (``numba_cache.py``; compiled on first use), and run on torch's intra-op thread count (module docstring),
    numba's setting restored after; serially on one thread or while another thread runs a parallel loop."""

    def __init__(self, loop: Callable[..., None]) -> None:
        self.parallel, self.serial = numba.njit(parallel=True)(loop), numba.njit(loop)
        for variant, dispatcher in (("parallel", self.parallel), ("serial", self.serial)):
            enable_cache(dispatcher, variant)
        functools.update_wrapper(self, loop)

    def __call__(self, *arguments: object) -> None:
        threads = torch.get_num_threads()
        if threads == 1 or not _parallel_loop.acquire(blocking=False):
            self.serial(*arguments)
            return
        try:
            before = numba.get_num_threads()
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            try:
                self.parallel(*arguments)
            finally:
                numba.set_num_threads(before)
        finally:
            _parallel_loop.release()


@_Loop
def distance_rows(gram, norms, start, kind, snap, out):
    """out[r, j − (j > i)] = D'_ij for i = start + r and every j != i, from Gram rows (c, n) float64;
    for the euclidean kind the squared distances S_ij, whose square root the caller takes."""
    c, n = gram.shape
    for r in numba.prange(c):
        i = start + r
        for j in range(n):
            if j == i:
                continue
            column = j - 1 if j > i else j
            if kind == COSINE:
                out[r, column] = 1.0 - gram[r, j] / norms[i] / norms[j]
            else:
                total = norms[i] + norms[j]
                squared = total + (-2.0 * gram[r, j])
                if squared <= total * snap:
                    squared = 0.0
                out[r, column] = squared


@_Loop
def distance_weights(d, grad_d, start, kind, weights, slopes):
    """Rows (c, n) of the distance backward's W = g/D (euclidean, 0 where D = 0), 2g (sqeuclidean) or g
    (cosine, divided by the norms afterwards), and for cosine the slopes g·(1 − D); diagonal entries 0;
    in float64."""
    c, w = d.shape
    for r in numba.prange(c):
        i = start + r
        weights[r, i] = 0.0
        if kind == COSINE:
            slopes[r, i] = 0.0
        for column in range(w):
            j = column + 1 if column >= i else column
            g = np.float64(grad_d[r, column])
            if kind == EUCLIDEAN:
                distance = np.float64(d[r, column])
                weights[r, j] = g / distance if distance > 0 else 0.0
            elif kind == SQEUCLIDEAN:
                weights[r, j] = g * 2.0
            else:
                weights[r, j] = g
                slopes[r, j] = g * (1.0 - np.float64(d[r, column]))


@_Loop
def row_statistics(d, statistics):
    """statistics[r] = (mean, population standard deviation, minimum, maximum) of row r of d, in float64;
    the deviations in a second pass over the row (two-pass variance)."""
    m, w = d.shape
    for r in numba.prange(m):
        total = 0.0
        smallest = largest = np.float64(d[r, 0])
        for j in range(w):
            value = np.float64(d[r, j])
            total += value
            smallest = min(smallest, value)
            largest = max(largest, value)
        mu = total / w
        squares = 0.0
        for j in range(w):
            deviation = np.float64(d[r, j]) - mu
            squares += deviation * deviation
        statistics[r, 0] = mu
        statistics[r, 1] = math.sqrt(squares / w)
        statistics[r, 2] = smallest
        statistics[r, 3] = largest


@_Loop
def row_largest(values, largest):
    """largest[r] = max_j |values[r, j]|, in float64."""
    m, w = values.shape
    for r in numba.prange(m):
        biggest = 0.0
        for j in range(w):
            biggest = max(biggest, abs(np.float64(values[r, j])))
        largest[r] = biggest


# Functions of other modules, compiled into the loops below (their cache keys cover them: numba_cache.py).
_basis = numba.njit(inline="always")(cubic_basis)
_std_coefficient = numba.njit(inline="always")(std_coefficient)


@numba.njit(inline="always")
def _positions(d, low, per_node, offsets, affine, r, nodes):
    """For every point of row r: its left node a, clamped to 1 … nodes − 3, and the cubic Lagrange basis
    (4, w) at its position between a and a + 1; in a pass of its own, which the compiler vectorizes."""
    w = d.shape[1]
    node = np.empty(w, dtype=np.int64)
    basis = np.empty((4, w))
    for j in range(w):
        offset = np.float64(d[r, j]) - low[r] if affine else offsets[r, j]
        u = offset * per_node[r] + 1.0
        a = min(max(np.int64(math.floor(u)), 1), nodes - 3)
        node[j] = a
        basis[0, j], basis[1, j], basis[2, j], basis[3, j] = _basis(u - a)
    return node, basis


@numba.njit(inline="always")
def _deposit_point(row, a, v, l0, l2, l3):
    """row[a − 1 … a + 2] += round(v·ℓ), node a taking the remainder so the taps sum to round(v)."""
    t0, t2, t3 = np.int64(np.rint(v * l0)), np.int64(np.rint(v * l2)), np.int64(np.rint(v * l3))
    row[a - 1] += t0
    row[a] += np.int64(np.rint(v)) - t0 - t2 - t3
    row[a + 1] += t2
    row[a + 2] += t3


@_Loop
def deposit(d, low, per_node, offsets, affine, values, scale, fixed):
    """fixed[s, r, a − 1 … a + 2] += round(c·scale·ℓ(f)) per point, the taps of each point summing exactly
    to round(c·scale): set 0 has weights c = 1, set 1 (if any) the weights values[0, r, j]."""
    sets, m, nodes = fixed.shape
    w = d.shape[1]
    for r in numba.prange(m):
        node, basis = _positions(d, low, per_node, offsets, affine, r, nodes)
        ones, weighted = fixed[0, r], fixed[sets - 1, r]
        unit, weight_scale = scale[0, r], scale[sets - 1, r]
        for j in range(w):
            l0, l2, l3 = basis[0, j], basis[2, j], basis[3, j]
            _deposit_point(ones, node[j], unit, l0, l2, l3)
            if sets == 2:
                _deposit_point(weighted, node[j], np.float64(values[0, r, j]) * weight_scale, l0, l2, l3)


@numba.njit(inline="always")
def _interpolate(values, a, l0, l1, l2, l3):
    """Σ_t ℓ_t values[a − 1 + t]: the cubic read-back at a point between nodes a and a + 1."""
    return (((0.0 + values[a - 1] * l0) + values[a] * l1) + values[a + 1] * l2) + values[a + 2] * l3


@_Loop
def read_ranks(d, low, per_node, offsets, affine, smoothed, fixed, scale, out):
    """out[r, j] = ½ + (Σ_t ℓ_t(f) M[r, a − 1 + t]) / (w − 1), M the smoothed node values plus the exact
    sign part ½ (2 P_a − m_a − P_last) / scale from the int64 prefix sums P of the masses m."""
    m, w = out.shape
    nodes = fixed.shape[2]
    for r in numba.prange(m):
        masses = fixed[0, r]
        total = np.int64(0)
        for a in range(nodes):
            total += masses[a]
        values = np.empty(nodes)
        prefix = np.int64(0)
        for a in range(nodes):
            prefix += masses[a]
            sign_part = np.float64(2 * prefix - masses[a] - total) / (2.0 * scale[0, r])
            values[a] = smoothed[0, r, a] + sign_part
        node, basis = _positions(d, low, per_node, offsets, affine, r, nodes)
        for j in range(w):
            l0, l1, l2, l3 = basis[0, j], basis[1, j], basis[2, j], basis[3, j]
            out[r, j] = _interpolate(values, node[j], l0, l1, l2, l3) / (w - 1) + 0.5


@_Loop
def read_gradient(d, low, per_node, offsets, affine, nodes, smoothed, grad_ranks, out):
    """out[r, j] = (G_j A_j − B_j) / (w − 1), A and B read back from the smoothed node values of the weight
    sets ones and G (sets 0 and 1 of ``smoothed``) on a grid of ``nodes`` nodes."""
    m, w = out.shape
    for r in numba.prange(m):
        slopes, weighted = smoothed[0, r], smoothed[1, r]
        node, basis = _positions(d, low, per_node, offsets, affine, r, nodes)
        for j in range(w):
            l0, l1, l2, l3 = basis[0, j], basis[1, j], basis[2, j], basis[3, j]
            slope_sum = _interpolate(slopes, node[j], l0, l1, l2, l3)
            weighted_sum = _interpolate(weighted, node[j], l0, l1, l2, l3)
            out[r, j] = (np.float64(grad_ranks[r, j]) * slope_sum - weighted_sum) / (w - 1)


@_Loop
def row_scale_backward(d, grad_y, factor, mean, std, live, out):
    """out[r, j] = c_r g_j + κ_r (d_j − μ_r), κ_r = ``std_coefficient`` on live rows (s_r > 0, c_r not
    clamped) and 0 elsewhere, for g = ∂L/∂y (stages/row_scale.py)."""
    m, w = d.shape
    for r in numba.prange(m):
        coefficient = 0.0
        if live[r]:
            weighted = 0.0
            for j in range(w):
                weighted += np.float64(d[r, j]) * np.float64(grad_y[r, j])
            coefficient = _std_coefficient(weighted, factor[r], std[r], w)
        for j in range(w):
            out[r, j] = factor[r] * np.float64(grad_y[r, j]) + coefficient * (np.float64(d[r, j]) - mean[r])
