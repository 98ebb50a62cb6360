"""The per-reference scale of the ``normalize`` option (docs/spec.md), forward and backward, for every fast path.

Rank stages compare y_j = c·d_j inside a row of candidate dissimilarities d (c, w) in the units of the
distance stage (D = 2^u·d, see ``distances.py``), with one factor c per row:

    "row_std":  c = 1 / (τ (s + 1e-12)),  s the population standard deviation of the row's w values of d
    "none":     c = 2^u / τ                (so that y = D/τ)

so y_j − y_k = (D~_j − D~_k)/τ is the spec's sigmoid argument. For "row_std", s is taken in the distance
stage's units, where the features' largest magnitude lies in [½, 1): the 1e-12 that keeps s + 1e-12
positive is relative to the features' scale, which is what makes the loss exactly scale-invariant
for any input magnitude (docs/spec.md, "Numerics"). The factor is computed in float64 and clamped into
[4·tiny, max/4] of the computation dtype (tiny its smallest normal value), a range a rank stage may
rescale by a constant within [¼, 4] without leaving the normal numbers: for a tiny τ the rank stages
then see ±inf for distinct values and exactly 0 for ties (the hard ranks), for a huge one σ(0) = ½ to
the dtype's precision, never inf·0 or 0·inf.

Backward, from ∂L/∂y to ∂L/∂d (population moments over the w candidates, s > 0):

    ∂L/∂d_j = c ∂L/∂y_j + (∂L/∂c)(∂c/∂s)(∂s/∂d_j),   ∂L/∂c = Σ_k d_k ∂L/∂y_k,
    ∂c/∂s = −c / (s + 1e-12),   ∂s/∂d_j = (d_j − μ) / (w s)

with no s term where s = 0 (a row of equal values; sqrt has no derivative there), where c was clamped,
(by the clamp), or for "none".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, TypeVar

import torch

from ..options import ROW_STD_EPS
from .interfaces import RowScaleStage

if TYPE_CHECKING:
    from ..settings import Settings

T = TypeVar("T", torch.Tensor, float)


class RowScale(NamedTuple):
    """One block's rows as the rank stages and the backward see them: the factors c (m,) in the
    computation dtype, whether each was clamped (m,), and the float64 row statistics (m, 4) they come
    from (``row_statistics``)."""

    factor: torch.Tensor
    clamped: torch.Tensor
    statistics: torch.Tensor
    normalize: str

    @property
    def mean(self) -> torch.Tensor:
        return self.statistics[:, 0]

    @property
    def std(self) -> torch.Tensor:
        return self.statistics[:, 1]

    @property
    def low(self) -> torch.Tensor:
        """Each row's smallest value."""
        return self.statistics[:, 2]

    @property
    def high(self) -> torch.Tensor:
        """Each row's largest value."""
        return self.statistics[:, 3]


def _clamped(factor: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``factor`` (float64) clamped into [4·tiny, max/4] of ``dtype`` and cast, and where it was clamped."""
    info = torch.finfo(dtype)
    low, high = 4.0 * info.tiny, info.max / 4.0
    clamped = (factor > high) | (factor < low)
    return factor.clamp(low, high).to(dtype), clamped


def row_statistics(d: torch.Tensor) -> torch.Tensor:
    """(m, 4) float64: each row's mean, population standard deviation, minimum and maximum of d (m, w), by
    torch reductions."""
    var, mean = torch.var_mean(d.to(torch.float64), dim=1, correction=0)
    low, high = torch.aminmax(d, dim=1)
    return torch.stack((mean, var.sqrt(), low.to(torch.float64), high.to(torch.float64)), dim=1)


def std_coefficient(grad_factor: T, factor: T, std: T, w: int) -> T:
    """κ = (∂L/∂c)(∂c/∂s)/(w s) = −(Σ_k d_k ∂L/∂y_k)·c / ((s + 1e-12)·w·s), the coefficient of (d_j − μ) in
    ∂L/∂d_j (module docstring): written once for torch tensors and, compiled by numba, for the loops'
    float64 scalars."""
    return -grad_factor * factor / ((std + ROW_STD_EPS) * w * std)


def _live(scale: RowScale) -> torch.Tensor:
    """(m,) bool: the rows whose factor depends on their standard deviation (module docstring)."""
    return (scale.normalize == "row_std") & (scale.std > 0) & ~scale.clamped


def row_scale(
    statistics: torch.Tensor, tau: float, normalize: str, unit_exponent: torch.Tensor, dtype: torch.dtype
) -> RowScale:
    """The factors (module docstring) of rows with the given ``row_statistics``, in ``dtype``."""
    if normalize == "none":
        inverse_tau = torch.full_like(statistics[:, 0], 1.0 / tau)
        factor, clamped = _clamped(torch.ldexp(inverse_tau, unit_exponent), dtype)
    else:
        factor, clamped = _clamped(1.0 / (tau * (statistics[:, 1] + ROW_STD_EPS)), dtype)
    return RowScale(factor, clamped, statistics, normalize)


def row_scale_backward(d: torch.Tensor, scale: RowScale, grad_y: torch.Tensor) -> torch.Tensor:
    """∂L/∂d (m, w) in d's dtype from ∂L/∂y (m, w) (module docstring), by torch operations."""
    factor = scale.factor.to(torch.float64)
    live = _live(scale)
    grad = grad_y.to(torch.float64) * factor[:, None]
    if scale.normalize == "none":
        return grad.to(d.dtype)
    d64 = d.to(torch.float64)
    grad_factor = (d64 * grad_y.to(torch.float64)).sum(dim=1)
    coefficient = std_coefficient(grad_factor, factor, torch.where(live, scale.std, 1.0), d.shape[1])
    coefficient = torch.where(live, coefficient, 0.0)
    return grad.add_((d64 - scale.mean[:, None]).mul_(coefficient[:, None])).to(d.dtype)


class TorchRowScale(RowScaleStage):
    """The row scale of ``normalize`` with temperature ``tau`` (the options'), by torch operations."""

    def __init__(self, tau: float, normalize: str) -> None:
        self.tau, self.normalize = tau, normalize

    @classmethod
    def from_settings(cls, settings: Settings) -> TorchRowScale:
        return cls(settings.options.tau, settings.options.normalize)

    def statistics(self, d: torch.Tensor) -> torch.Tensor:
        return row_statistics(d)

    def scale(self, statistics: torch.Tensor, exponent: torch.Tensor, dtype: torch.dtype) -> RowScale:
        return row_scale(statistics, self.tau, self.normalize, exponent, dtype)

    def backward(self, d: torch.Tensor, scale: RowScale, grad_y: torch.Tensor) -> torch.Tensor:
        return row_scale_backward(d, scale, grad_y)


class NumbaRowScale(TorchRowScale):
    """The row scale with its statistics and backward as compiled loops (CPU tensors, numba installed):
    one pass over the rows each."""

    def statistics(self, d: torch.Tensor) -> torch.Tensor:
        from .numba_loops import row_statistics as loop

        statistics = torch.empty((d.shape[0], 4), dtype=torch.float64)
        loop(d.numpy(), statistics.numpy())
        return statistics

    def backward(self, d: torch.Tensor, scale: RowScale, grad_y: torch.Tensor) -> torch.Tensor:
        from .numba_loops import row_scale_backward as loop

        out = torch.empty_like(d)
        arrays = (d, grad_y, scale.factor.to(torch.float64), scale.mean, scale.std, _live(scale), out)
        loop(*(t.numpy() for t in arrays))
        return out
