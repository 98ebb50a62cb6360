"""The logistic sigmoid σ(z) = 1 / (1 + e^(−z)) and its slope σ'(z) = σ(z) σ(−z), for the rank kernels.

Accurate form (default): with e = exp(−|z|) ∈ [0, 1],

    σ(z) = 1 / (1 + e)  for z >= 0,    e / (1 + e)  for z < 0,    σ'(z) = e / (1 + e)²

which never overflows: z = ±inf gives e = 0, σ = 1 or 0 and σ' = 0. Two special-function operations
per evaluation (the exponential and the reciprocal).

Fast form (``FAST``, float32 on CUDA only): σ(z) = ½ + ½ tanh(z/2) and σ'(z) = ¼ (1 − tanh²(z/2)) with
one ``tanh.approx.f32`` instruction, the one-special-function form SPEC's performance floor assumes.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tanh_approx(x):
    return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def sigmoid(z, FAST: tl.constexpr):
    """σ(z), elementwise."""
    if FAST:
        return 0.5 + 0.5 * _tanh_approx(0.5 * z)
    e = tl.exp(-tl.abs(z))
    r = 1.0 / (1.0 + e)
    return tl.where(z >= 0, r, e * r)


@triton.jit
def sigmoid_slope(z, FAST: tl.constexpr):
    """σ'(z) = σ(z) σ(−z), elementwise."""
    if FAST:
        t = _tanh_approx(0.5 * z)
        return 0.25 - 0.25 * t * t
    e = tl.exp(-tl.abs(z))
    r = 1.0 / (1.0 + e)
    return e * r * r
