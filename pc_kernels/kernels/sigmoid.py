"""The logistic sigmoid σ(z) = 1 / (1 + e^(−z)) and its slope σ'(z) = σ(z) σ(−z), for the rank kernels.

Both jit functions take their argument already scaled, t = z·SCALE, with the SCALE of the form they
evaluate: ``ACCURATE_SCALE`` = log2(e) or ``FAST_SCALE`` = ½. The rank kernels fold it into their per-row
factor once per program, t = (c·SCALE)·(d_j − d_k), so no evaluation spends an instruction on it, and the
sigmoid is exact for the t it is given up to its own instructions' error: t is the argument, rounded once,
as z = c·(d_j − d_k) was, and c·SCALE is rounded once per row, which changes the row's factor by at most
half an ulp.

Accurate form (default), float32 and float64. With E = 2^(−|t|) = e^(−|z|) and ρ ≈ 1/(1 + E):

    float32:  r = 1 − E·ρ = σ(|z|)           exactly 1 where E = 0
              σ = max(E, h)·r,                h = clamp(t·2^100, 0, 1): 1 for t >= 2^-100, 0 for t <= 0
    float64:  σ = ρ for t >= 0, E·ρ for t < 0
    both:     σ' = E·ρ·ρ

float32: E is one ``ex2.approx.ftz`` (results below 2^-126 flushed to 0), ρ is taken for two elements of
a thread at once with one ``rcp.approx.ftz`` (Montgomery's trick: 1/y_a = y_b/(y_a·y_b)), so an
evaluation costs 1.5 special-function operations instead of 2. The max picks r for t > 0 and E·r for
t < 0 without a compare (for 0 < t < 2^-100, E rounds to 1 and σ = r = ½). float64: E is libdevice's
exp of −|t|·ln2 (a polynomial, no special-function operation; the product's rounding moves E by at most
|z|·2^-53 relative), ρ ``rcp.approx.ftz.f64`` and one cubic Newton step (3 FMAs, no slow path).

At t = ±inf, E = 0: σ(+inf) = 1 and σ(−inf) = 0 exactly, σ'(±inf) = 0. No t other than NaN gives NaN
(a NaN t gives NaN, through r or ρ), and σ stays in [0, 1].

Fast form (``FAST``, float32 on CUDA only): σ = ½ + ½·tanh(t), σ' = ¼·(1 − tanh²(t)) with one
``tanh.approx.f32``: absolute error up to 2^-12, no relative accuracy where σ or σ' is small.

``python -m benchmarks hopper`` (benchmarks/hopper_model.py) counts the compiled instructions and
measures both float32 forms' error by a numpy emulation of these instruction sequences at NVIDIA's
documented error bounds; docs/hopper_model.md gives the figures. Under the Triton interpreter (CPU
tensors) the approximate instructions are replaced by numpy's exp2 and correctly rounded division; the
rest of the sequence is the same.
"""

from __future__ import annotations

import triton
import triton.language as tl

ACCURATE_SCALE = tl.constexpr(1.4426950408889634)  # log2(e): t = z·log2(e), E = 2^(−|t|)
FAST_SCALE = tl.constexpr(0.5)  # t = z/2, σ = ½ + ½·tanh(t)
STEP_SCALE = tl.constexpr(2.0**100)  # h = clamp(t·2^100, 0, 1) is 1 from t = 2^-100 on

_INTERPRETING = tl.constexpr(triton.knobs.runtime.interpret)
_LN2 = tl.constexpr(0.6931471805599453)
# Montgomery's trick on two elements of a thread: one reciprocal of the product, two multiplies.
_PAIRED_RCP = tl.constexpr(
    "{ .reg .f32 p, q; mul.f32 p, $2, $3; rcp.approx.ftz.f32 q, p; mul.f32 $0, q, $3; mul.f32 $1, q, $2; }"
)


@triton.jit
def _tanh_approx(x):
    return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def _exp2_of_minus_abs(t):
    """E = 2^(−|t|)."""
    # (x * -1.0 rather than -x: Triton 3.6 lowers unary minus to a subtraction that ptxas does not fold)
    if t.dtype == tl.float64:  # libdevice's exp, multiply included, is one FP64 instruction shorter than its exp2
        return tl.exp(tl.abs(t) * -_LN2)
    return tl.math.exp2(tl.abs(t) * -1.0)


@triton.jit
def _reciprocal(y):
    """1/y for y in [1, 2]."""
    if _INTERPRETING:
        return 1.0 / y
    elif y.dtype == tl.float64:  # seed good to about 2^-20, refined by ρ·(1 + ε + ε²)
        rho = tl.inline_asm_elementwise("rcp.approx.ftz.f64 $0, $1;", "=d,d", [y], dtype=y.dtype, is_pure=True, pack=1)
        eps = tl.fma(y * -1.0, rho, 1.0)
        return tl.fma(tl.fma(eps, eps, eps), rho, rho)
    else:
        return tl.inline_asm_elementwise(_PAIRED_RCP, "=f,=f,f,f", [y], dtype=tl.float32, is_pure=True, pack=2)


@triton.jit
def sigmoid(t, FAST: tl.constexpr):
    """σ(z), elementwise, of t = z·FAST_SCALE with ``FAST``, else t = z·ACCURATE_SCALE."""
    if FAST:
        return 0.5 + 0.5 * _tanh_approx(t)
    e = _exp2_of_minus_abs(t)
    if t.dtype == tl.float64:
        rho = _reciprocal(1.0 + e)
        return tl.where(t >= 0, rho, e * rho)
    r = tl.fma(e * -1.0, _reciprocal(1.0 + e), 1.0)
    return tl.maximum(e, tl.clamp(t * STEP_SCALE, 0.0, 1.0)) * r


@triton.jit
def sigmoid_slope(t, FAST: tl.constexpr):
    """σ'(z) = σ(z) σ(−z), elementwise, of t = z·FAST_SCALE with ``FAST``, else t = z·ACCURATE_SCALE."""
    if FAST:
        tanh = _tanh_approx(t)
        return 0.25 - 0.25 * tanh * tanh
    e = _exp2_of_minus_abs(t)
    rho = _reciprocal(1.0 + e)
    return e * rho * rho
