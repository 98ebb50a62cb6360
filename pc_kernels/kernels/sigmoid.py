"""The logistic sigmoid σ(z) = 1 / (1 + e^(−z)) and its slope σ'(z) = σ(z) σ(−z), for the rank kernels.

Accurate form (default), float32. With x = −|z|·log2(e) rounded to float32 and E = 2^x (``ex2.approx.ftz``):

    e^(−|z|) = E·e^d,             d = −|z| − x·ln2: x's rounding residual (one FMA)
    r = 1 − E·ρ,  ρ ≈ 1/(1 + E)   r = σ(|z|), exactly 1 where E = 0
    σ(z)  = max(E·(1 + d), h)·r,  h = clamp(z·2^100, 0, 1): 1 for z >= 2^-100, 0 for z <= 0
    σ'(z) = E·ρ·ρ

The max picks r for z > 0 and e^(−|z|)·r for z < 0 without a compare, and drops d's NaN at z = ±inf
(E = 0, d = inf − inf): σ(+inf) = 1 and σ(−inf) = 0 exactly, σ'(±inf) = 0, no z gives NaN, σ stays in
[0, 1]. Without d, σ(z) for z << 0 would carry x's rounding, a relative error up to |z|·7e-8 (6e-6 at
z = −87); σ' keeps that error, as correcting it would cost three more instructions per evaluation. ρ is
taken for two elements of a thread at once with one ``rcp.approx.ftz`` (Montgomery's trick:
1/y_a = y_b/(y_a·y_b)), so an evaluation costs 1.5 special-function operations instead of 2.
``python -m benchmarks hopper`` counts the compiled instructions and measures this sequence's error with
``emulate`` at NVIDIA's documented bounds (PTX ISA: ex2.approx 2 ulp, rcp.approx 1 ulp, tanh.approx 2^-11
relative); docs/hopper_model.md shows both: σ within 1e-6 relative wherever σ(z) >= 2^-126 (flushed to 0
below), σ' within 1e-6 up to |z| of about 10 and a few 1e-6 beyond.

float64: e = exp(−|z|), ρ = 1/(1 + e) from ``rcp.approx.ftz.f64`` and one cubic Newton step (3 FMAs, no
slow path), σ = ρ or e·ρ, σ' = e·ρ·ρ.

Fast form (``FAST``, float32 on CUDA only): σ(z) = ½ + ½·tanh(z/2), σ'(z) = ¼·(1 − tanh²(z/2)) with one
``tanh.approx.f32``: absolute error up to 2^-12, no relative accuracy where σ or σ' is small. Under the
Triton interpreter (CPU tensors) the approximate instructions are replaced by numpy's exp2 and correctly
rounded division; the rest of the sequence is the same.
"""

from __future__ import annotations

import numpy as np
import triton
import triton.language as tl

_INTERPRETING = tl.constexpr(triton.knobs.runtime.interpret)
_LOG2E = tl.constexpr(1.4426950408889634)
_LN2 = tl.constexpr(0.6931471805599453)
_STEP_SCALE = tl.constexpr(2.0**100)  # h = clamp(z·2^100, 0, 1) is 1 from z = 2^-100 on
# Montgomery's trick on two elements of a thread: one reciprocal of the product, two multiplies.
_PAIRED_RCP = tl.constexpr(
    "{ .reg .f32 p, q; mul.f32 p, $2, $3; rcp.approx.ftz.f32 q, p; mul.f32 $0, q, $3; mul.f32 $1, q, $2; }"
)


@triton.jit
def _tanh_approx(x):
    return tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=f,f", [x], dtype=tl.float32, is_pure=True, pack=1)


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
def sigmoid(z, FAST: tl.constexpr):
    """σ(z), elementwise."""
    if FAST:
        return 0.5 + 0.5 * _tanh_approx(0.5 * z)
    if z.dtype == tl.float64:
        e = tl.exp(tl.abs(z) * -1.0)
        rho = _reciprocal(1.0 + e)
        return tl.where(z >= 0, rho, e * rho)
    # (x * -1.0 rather than -x: Triton 3.6 lowers unary minus to a subtraction that ptxas does not fold)
    x = tl.abs(z) * -_LOG2E
    e = tl.math.exp2(x)
    r = tl.fma(e * -1.0, _reciprocal(1.0 + e), 1.0)
    d = tl.fma(x, -_LN2, tl.abs(z) * -1.0)
    return tl.maximum(tl.fma(e, d, e), tl.clamp(z * _STEP_SCALE, 0.0, 1.0)) * r


@triton.jit
def sigmoid_slope(z, FAST: tl.constexpr):
    """σ'(z) = σ(z) σ(−z), elementwise."""
    if FAST:
        t = _tanh_approx(0.5 * z)
        return 0.25 - 0.25 * t * t
    if z.dtype == tl.float64:
        e = tl.exp(tl.abs(z) * -1.0)
    else:
        e = tl.math.exp2(tl.abs(z) * -_LOG2E)
    rho = _reciprocal(1.0 + e)
    return e * rho * rho


_F32 = np.float32
_TINY = _F32(2.0**-126)


def _flush(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < _TINY, _F32(0), x).astype(_F32)


def _off(x: np.ndarray, ulps: int) -> np.ndarray:
    """x moved by ``ulps`` units in the last place (toward +inf for ulps > 0), zeros and infinities kept."""
    finite = np.isfinite(x) & (x != 0)
    for _ in range(abs(ulps)):
        x = np.where(finite, np.nextafter(x, _F32(np.inf) if ulps > 0 else _F32(-np.inf)), x).astype(_F32)
    return x


def _fma(a: np.ndarray, b: np.ndarray | float, c: np.ndarray | float) -> np.ndarray:
    """float32 a·b + c: the product is exact in float64, the sum rounded twice (rarely an ulp off one rounding)."""
    return (a.astype(np.float64) * np.float64(b) + c).astype(_F32)


def emulate(z: np.ndarray, slope: bool, fast: bool, bias: tuple[int, int] = (0, 0)) -> np.ndarray:
    """σ(z), or σ'(z) with ``slope``, of float32 ``z`` as the float32 kernels compute it on sm_90: numpy float32
    for every rounded instruction, and each approximate instruction's result off by ``bias`` times NVIDIA's
    documented maximum error: (ex2.approx 2 ulp or tanh.approx 2^-11 relative, rcp.approx 1 ulp); .ftz results
    below 2^-126 flushed to zero. The reciprocal pairs element i with element −1−i."""
    z = np.asarray(z, dtype=_F32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if fast:
            t = (np.tanh(np.float64(0.5) * z) * (1 + bias[0] * 2.0**-11)).astype(_F32)
            return _fma(-(_F32(0.25) * t).astype(_F32), t, 0.25) if slope else _fma(t, 0.5, 0.5)
        x = (np.abs(z) * -_F32(_LOG2E.value)).astype(_F32)
        e = _flush(_off(np.exp2(x.astype(np.float64)).astype(_F32), 2 * bias[0]))
        y = (_F32(1) + e).astype(_F32)
        q = _flush(_off((1.0 / (y * y[::-1]).astype(_F32).astype(np.float64)).astype(_F32), bias[1]))
        rho = (q * y[::-1]).astype(_F32)
        if slope:
            return ((e * rho).astype(_F32) * rho).astype(_F32)
        r = _fma(-e, rho, 1.0)
        d = _fma(x, -_F32(_LN2.value), -np.abs(z))
        h = np.clip((z * _F32(_STEP_SCALE.value)).astype(_F32), _F32(0), _F32(1))
        return (np.fmax(_fma(e, d, e), h) * r).astype(_F32)
