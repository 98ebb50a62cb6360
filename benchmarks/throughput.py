"""Sigmoid evaluations of one loss call, and the GPU floor of SPEC.md they are compared with."""

from __future__ import annotations

MODES = ("fwd", "fwd_bwd")

# SPEC.md's floor: on an H100 the dense algorithm is bound by the special-function unit, which
# issues about 16 operations per clock per SM; with 132 SMs at ~1.8 GHz that is
# 16 * 132 * 1.8e9 ≈ 3.8e12 ≈ 4e12 special-function operations per second, one per sigmoid
# (σ(z) = ½ + ½·tanh(z/2)).
H100_SIGMOID_FLOOR_PER_S = 16 * 132 * 1.8e9

# Soft ranks on both sides (student and teacher, the default soft teacher).
_SOFT_SIDES = 2


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is "fwd" or "fwd_bwd", else raise a ValueError."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def sigmoid_evaluations(n: int, mode: str) -> int:
    """Sigmoid (and σ') evaluations of one call for a batch of n (SPEC.md "Cost").

    Forward: n(n−1)(n−2) per soft side, two sides; "fwd_bwd" adds n(n−1)(n−2) σ' evaluations
    for the student side (≈ 3·n³ in all).
    """
    triples = n * (n - 1) * (n - 2)
    sides = _SOFT_SIDES if check_mode(mode) == "fwd" else _SOFT_SIDES + 1
    return sides * triples
