"""The logistic sigmoid σ(z) = 1 / (1 + e^(−z)) and its slope σ'(z) = σ(z) σ(−z), for the rank kernels.

``sigmoid`` and ``sigmoid_slope`` take their argument already scaled, t = z·SCALE, with the SCALE of the form they
evaluate: ``ACCURATE_SCALE`` = log2(e) or ``FAST_SCALE`` = ½. The rank kernels fold it into their per-row
factor once per program, t = (c·SCALE)·(d_j − d_k), so no evaluation spends an instruction on it, and the
sigmoid is exact for the t it is given up to its own instructions' error: t is the argument, rounded once,
as z = c·(d_j − d_k) was, and c·SCALE is rounded once per row, which changes the row's factor by at most
half an ulp.

Accurate form (default), float32 and float64. With E = 2^(−|t|) = e^(−|z|) and ρ ≈ 1/(1 + E):

    float32:  r = 1 − E·ρ = σ(|z|)           exactly 1 where E = 0
              σ = max(E, h)·r,                h = clamp(t·2^100, 0, 1): 1 for t >= 2^-100, 0 for t <= 0
    float64:  σ = ρ for t >= 0, E·ρ for t < 0
    both:     x = E·ρ = σ(−|z|) <= ½,        σ' = x − x² (one FMA; no cancellation, x² <= x/2)

float32: E is one ``ex2.approx.ftz`` (results below 2^-126 flushed to 0). ρ is taken for four elements of a
thread at once with one ``rcp.approx.ftz`` (Montgomery's trick), so an evaluation costs 1.25 special-function
operations instead of 2. Two pairs (E1, E2), (E3, E4), each forming one y = 1 + E:

    y2 = 1 + E2,  p12 = E1·y2 + y2 (one FMA, = (1 + E1)·y2),  likewise p34;   q = rcp(p12·p34)
    q12 = q·p34 = 1/p12,  ρ1 = q12·y2,  ρ2 = q12·E1 + q12 (one FMA, = q12·(1 + E1));  likewise ρ3, ρ4

(12 instructions for four reciprocals, 3 per evaluation; p12·p34 is in [1, 16]). The max picks r for t > 0
and E·r for t < 0 without a compare (for 0 < t < 2^-100, E rounds to 1 and σ = r = ½). float64: E is
libdevice's exp of −|t|·ln2 (a polynomial, no special-function operation; the product's rounding moves E by
at most |z|·2^-53 relative), ρ ``rcp.approx.ftz.f64`` and one cubic Newton step (3 FMAs, no slow path).

Error of the float32 form, to first order, in units of u = 2^-24 (a rounding moves a result by at most u
relative; NVIDIA's PTX ISA bounds ``ex2.approx`` by 2 ulp and ``rcp.approx`` by 1 ulp from the correctly
rounded result, so by 2.5 and 1.5 ulp, at most 5u and 3u, from the true value). ρ1: the roundings of p12,
p12·p34, q12 and ρ1 and the reciprocal's, 7u (y2's rounding cancels: it is in p12 and in ρ1 alike, and so is
p34's); ρ2 also carries y2's rounding, 8u. With ε_E <= 5u, ε_ρ <= 8u and x = E/(1 + E):

    σ, t > 0:  r = 1 − E·ρ (one rounding):                 E·ε_ρ + E/(1+E)·ε_E + u       <= 11.5u at E = 1
    σ, t < 0:  E·r:                                         E·ε_ρ + ε_E/(1+E) + 2u        <= 12.5u at E = 1
    σ':        x = E·ρ, then x − x² (d ln σ'/d ln x = (1 − 2x)/(1 − x) <= 1):
               (ε_E·(1 − x) + ε_ρ + u)·(1 − 2x)/(1 − x) + u                               <= 15u at E = 0

that is at most 7.5e-7 (σ) and 8.9e-7 (σ') relative, below 1e-6 with every error at its bound in the same
direction (σ' = E·ρ·ρ would carry ε_ρ twice: 23u, 1.4e-6). ``emulate`` in benchmarks/hopper_model.py
measures the errors at the documented bounds over a sweep of t.

At t = ±inf, E = 0: σ(+inf) = 1 and σ(−inf) = 0 exactly, σ'(±inf) = 0. A NaN t gives NaN, through r or ρ,
and so do the other three elements of its reciprocal group (the rank sums holding it are NaN in any case);
no other t gives NaN, and σ stays in [0, 1], σ' in [0, ¼].

Fast form (``FAST``, float32 on CUDA only): σ = ½ + ½·tanh(t), σ' = ¼·(1 − tanh²(t)) with one
``tanh.approx.f32``: absolute error up to 2^-12, no relative accuracy where σ or σ' is small.

Separable form (float32, the rows of ``separable.py``): ``separable_sigmoid`` and ``separable_sigmoid_slope``
take the float32 factors A = 2^(−s_j), B = 2^(s_k) of the row's exponents s = c'(d − m), so that
A·B = 2^(−t), t = s_j − s_k, with ρ = 1/(1 + A·B) and x = A·B·ρ = σ(−z):

    σ  = ρ = rcp(y),   y = A·B + 1 (one FMA)                      one FMA, one rcp.approx.ftz
    σ' = (A·ρ)·(B·ρ)                                              three multiplies

Every factor and product is a normal float32 on such a row, and a row holding a NaN or an infinity never takes
this form (``separable.py``). The argument is not rounded:
s_j and s_k are float64 (within 2^-46 of c'(d − m)), so t is c'(d_j − d_k) to about 1e-14 and the error is
the evaluation's own. To first order, in units of u, with ε_A, ε_B <= u (each factor rounded once from float64;
the emulation also takes both rounded the same way to the next float32, up to 2u), δ_y <= u the FMA's
rounding, δ_r <= 3u the reciprocal's and u for each product:

    σ:   ε_ρ = −x·(ε_A + ε_B) − δ_y + δ_r                           <= 2u·x + u + 3u = 6u      (8u)
    σ':  ε_A + ε_B + 2ε_ρ + 3u = (ε_A + ε_B)(1 − 2x) − 2δ_y + 2δ_r + 3u <= 2u + 2u + 6u + 3u = 13u   (15u)

that is 3.6e-7 (σ) and 7.7e-7 (σ'), 4.8e-7 and 8.9e-7 with factors up to 2u off: below 1e-6. ``emulate_separable``
in benchmarks/hopper_model.py measures it over the sweep of t, each t at random places in a row.

``python -m benchmarks hopper`` (benchmarks/hopper_model.py) counts the compiled instructions and
measures each float32 form's error by a numpy emulation of these instruction sequences at NVIDIA's
documented error bounds; docs/hopper_model.md gives the figures. Under the Triton interpreter (CPU
tensors) the exponential is numpy's exp2, the reciprocal group one correctly rounded 1/(1 + E) per
element and the separable form's reciprocal a correctly rounded 1/y; the rest of each sequence is the same.
"""

from __future__ import annotations

import triton
import triton.language as tl

ACCURATE_SCALE = tl.constexpr(1.4426950408889634)  # log2(e): t = z·log2(e), E = 2^(−|t|)
FAST_SCALE = tl.constexpr(0.5)  # t = z/2, σ = ½ + ½·tanh(t)
STEP_SCALE = tl.constexpr(2.0**100)  # h = clamp(t·2^100, 0, 1) is 1 from t = 2^-100 on

_INTERPRETING = tl.constexpr(triton.knobs.runtime.interpret)
_LN2 = tl.constexpr(0.6931471805599453)
# Montgomery's trick on four elements E1..E4 ($4..$7) of a thread: ρ_i = 1/(1 + E_i) ($0..$3) from one reciprocal
# of the product. Each pair needs one of its y = 1 + E: p12 = E1·y2 + y2, ρ1 = q12·y2, ρ2 = q12·E1 + q12.
_GROUPED_RCP = tl.constexpr(
    "{ .reg .f32 y2, y4, p12, p34, p, q, q12, q34;"
    " add.f32 y2, $5, 0f3F800000; add.f32 y4, $7, 0f3F800000;"
    " fma.rn.f32 p12, $4, y2, y2; fma.rn.f32 p34, $6, y4, y4;"
    " mul.f32 p, p12, p34; rcp.approx.ftz.f32 q, p; mul.f32 q12, q, p34; mul.f32 q34, q, p12;"
    " mul.f32 $0, q12, y2; fma.rn.f32 $1, q12, $4, q12; mul.f32 $2, q34, y4; fma.rn.f32 $3, q34, $6, q34; }"
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
def _reciprocal_of_one_plus(e):
    """ρ = 1/(1 + E) for E in [0, 1]."""
    if _INTERPRETING:
        return 1.0 / (1.0 + e)
    elif e.dtype == tl.float64:  # seed good to about 2^-20, refined by ρ·(1 + ε + ε²)
        y = 1.0 + e
        rho = tl.inline_asm_elementwise("rcp.approx.ftz.f64 $0, $1;", "=d,d", [y], dtype=y.dtype, is_pure=True, pack=1)
        eps = tl.fma(y * -1.0, rho, 1.0)
        return tl.fma(tl.fma(eps, eps, eps), rho, rho)
    else:
        return tl.inline_asm_elementwise(
            _GROUPED_RCP, "=f,=f,=f,=f,f,f,f,f", [e], dtype=tl.float32, is_pure=True, pack=4
        )


@triton.jit
def _reciprocal(y):
    """1/y, ``rcp.approx.ftz`` (correctly rounded under the interpreter)."""
    if _INTERPRETING:
        return 1.0 / y
    return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=f,f", [y], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def separable_sigmoid(a, b):
    """σ(z) = 1/(1 + A·B), elementwise, of float32 factors A = 2^(−s_j), B = 2^(s_k), z = (s_j − s_k)/log2(e)."""
    return _reciprocal(tl.fma(a, b, 1.0))


@triton.jit
def separable_sigmoid_slope(a, b):
    """σ'(z) = A·B/(1 + A·B)² = (A·ρ)(B·ρ), ρ = 1/(1 + A·B), elementwise, of the factors of ``separable_sigmoid``."""
    rho = _reciprocal(tl.fma(a, b, 1.0))
    return (a * rho) * (b * rho)


@triton.jit
def sigmoid(t, FAST: tl.constexpr):
    """σ(z), elementwise, of t = z·FAST_SCALE with ``FAST``, else t = z·ACCURATE_SCALE."""
    if FAST:
        return 0.5 + 0.5 * _tanh_approx(t)
    e = _exp2_of_minus_abs(t)
    if t.dtype == tl.float64:
        rho = _reciprocal_of_one_plus(e)
        return tl.where(t >= 0, rho, e * rho)
    r = tl.fma(e * -1.0, _reciprocal_of_one_plus(e), 1.0)
    return tl.maximum(e, tl.clamp(t * STEP_SCALE, 0.0, 1.0)) * r


@triton.jit
def sigmoid_slope(t, FAST: tl.constexpr):
    """σ'(z) = σ(z) σ(−z), elementwise, of t = z·FAST_SCALE with ``FAST``, else t = z·ACCURATE_SCALE."""
    if FAST:
        tanh = _tanh_approx(t)
        return 0.25 - 0.25 * tanh * tanh
    x = _exp2_of_minus_abs(t)
    x = x * _reciprocal_of_one_plus(x)  # σ(−|z|) <= ½
    return tl.fma(x * -1.0, x, x)
