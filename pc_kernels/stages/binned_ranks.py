"""The binned rank stage (``algorithm="binned"``): each row's sigmoid sums as a 1-D convolution on a grid.

Row r of candidate dissimilarities d (m, w) with factor c gives the points y_j = c·d_j, in units of τ
(``row_scale.py``). With K(u) = σ(u) − ½ = ½ tanh(u/2), odd and smooth, so that its k = j term vanishes:

    R_j = ½ + 1/(w−1) Σ_k K(y_j − y_k)

and the backward of docs/spec.md, with K'(u) = σ'(u) = σ(u) σ(−u):

    ∂L/∂y_j = (G_j A_j − B_j) / (w − 1),   A_j = Σ_k K'(y_j − y_k),   B_j = Σ_k K'(y_j − y_k) G_k

(the k = j terms of A and B cancel in G_j A_j − B_j, so they are kept). Every such sum
Σ_k c_k K(y_j − y_k) is a kernel sum, computed for all j of a row in O(w + L log L) on a grid of
spacing h instead of the dense O(w²), with the four-point (cubic) Lagrange basis ℓ_s(f), s = −1 … 2, on
the nodes around each point (a point at grid coordinate u lies between nodes a = ⌊u⌋ and a + 1, f = u − a):

    1. deposit   point k puts c_k ℓ_s(f_k) on node a_k + s;
    2. convolve  M_a = Σ_b m_b K((a − b) h) for every node;
    3. read      the sum at y_j is Σ_s ℓ_s(f_j) M_{a_j + s}.

The three steps are the tensor-product cubic interpolation of F(x, y) = K(x − y) between grid nodes. In
one variable the interpolation error is at most E·h⁴·max|f''''|, E = max_t |(t+1) t (t−1)(t−2)| / 4! = 3/128,
and the basis' Lebesgue constant is Λ = 5/4, so each pair's term is off by at most
(1 + Λ)·E·h⁴·max|K''''| = (27/512)·max|σ''''|·h⁴ = RANK_ERROR_CONSTANT·h⁴ (max|σ''''| = 0.1276839…, where
σ(1 − σ)(1 − 2σ)(1 − 12σ + 12σ²) peaks), and each term of A by (27/512)·max|σ'''''|·h⁴ =
SLOPE_ERROR_CONSTANT·h⁴ (max|σ'''''| = 1/4, at 0). A row's sum has w such terms (its own included) over
w − 1, so the normalized soft ranks are within RANK_ERROR_CONSTANT·h⁴·w/(w − 1) of the dense ones, and
the rank gradient ∂L/∂y_j within (|G_j| + max_k |G_k|)·SLOPE_ERROR_CONSTANT·h⁴·w/(w − 1). The automatic
grid takes the h that makes the rank bound RANK_TOLERANCE for the batch's w (``automatic_spacing``):
the same h for every row, so a row's result depends only on that row and n, not on which rows share
its batch, block or process. With ``bins`` = B, each row's grid spans its (gap-closed) spread with B
nodes (plus one margin node on each side for the basis).

Step 2 splits K = ½ sign + (K − ½ sign) at the nodes: the sign part is exact, from int64 prefix sums of
the masses; the rest, −sign(u) σ(−|u|), and K' decay like e^(−|u|), so an FFT of length
L >= nodes + SATURATION/h (zero padded, rounded up to a power of two) convolves them with a wrap-around
error below e^(−SATURATION) per pair.

Gaps: for the same reason, every gap between consecutive values of a row wider than SATURATION is
shortened to SATURATION before gridding (by sorting the row): the grid then spans the occupied parts of
the row, an outlier costs no bins, and a tiny τ (values far apart) costs at most SATURATION/h nodes per
value. Each pair across such a gap stays at least SATURATION apart, where its terms change by less than
e^(−SATURATION).

Determinism: deposits are summed in int64 fixed point (each row's weights scaled, in float64, so the
row's total fits), and integer sums do not depend on the order of the additions.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ..options import MAX_BINS
from .interfaces import RankStage
from .row_scale import RowScale

if TYPE_CHECKING:
    from ..settings import Settings

T = TypeVar("T", torch.Tensor, float)

# (27/512)·max|σ''''| and (27/512)·max|σ'''''|: bounds on one pair's term per h⁴ (module docstring).
RANK_ERROR_CONSTANT = 27.0 / 512.0 * 0.12768392196780176
SLOPE_ERROR_CONSTANT = 27.0 / 512.0 * 0.25
# Bound on the normalized soft rank error met by the automatic grid.
RANK_TOLERANCE = 1e-5
# Kernel tails beyond SATURATION are dropped, and wider gaps shortened to it (e^(−30) ≈ 1e-13).
SATURATION = 30.0
# Bits of the int64 fixed-point deposits left for the values (the rest absorbs the row's sum).
_FIXED_POINT_BITS = 61


def automatic_spacing(w: int) -> float:
    """Grid spacing h (units of τ) of the automatic grid for rows of w candidates: the h with
    RANK_ERROR_CONSTANT·h⁴·w/(w − 1) = RANK_TOLERANCE."""
    return (RANK_TOLERANCE * (w - 1) / (w * RANK_ERROR_CONSTANT)) ** 0.25


def cubic_basis(f):  # type: (T) -> tuple[T, T, T, T]
    """The cubic Lagrange basis ℓ_{−1}, ℓ_0, ℓ_1, ℓ_2 on nodes −1, 0, 1, 2 at positions f ∈ [0, 1] between
    nodes 0 and 1: written once for torch tensors and, compiled by numba and by Triton, for the loops' and the
    grid kernels' float64 values. It multiplies by the constant 1/6 rather than dividing by 6 (a GPU's
    division is a call), and names no global, which a Triton function may read only as a constexpr: so its
    signature's type is a type comment, since Triton reads a parameter's annotation as code."""
    return (
        -f * (f - 1.0) * (f - 2.0) * (1.0 / 6.0),
        (f + 1.0) * (f - 1.0) * (f - 2.0) * 0.5,
        -(f + 1.0) * f * (f - 2.0) * 0.5,
        (f + 1.0) * f * (f - 1.0) * (1.0 / 6.0),
    )


def lagrange_weights(fraction: torch.Tensor) -> torch.Tensor:
    """The cubic Lagrange basis at positions ``fraction`` (``cubic_basis``), stacked: (4, *fraction.shape)."""
    return torch.stack(cubic_basis(fraction))


def _closed_offsets(d: torch.Tensor, factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets y − min y (float64, (m, w)) of each row's points y = c·d with every gap wider than
    SATURATION shortened to SATURATION (module docstring), and each row's spread (m,), by sorting."""
    ordered, order = d.to(torch.float64).sort(dim=1)
    # Differences first, then the factor: a gap c·Δ that overflows is inf, shortened like any other.
    gaps = torch.diff(ordered, dim=1).mul_(factor[:, None]).clamp_(max=SATURATION)
    positions = torch.cat((gaps.new_zeros((d.shape[0], 1)), gaps.cumsum_(dim=1)), dim=1)
    return torch.empty_like(positions).scatter_(1, order, positions), positions[:, -1]


def _spectrum(length: int, spacing: torch.Tensor, derivative: bool) -> torch.Tensor:
    """rfft of K − ½ sign (``derivative``: K') at the circular offsets of ``length`` nodes spaced
    ``spacing`` (r,) apart per row: (r, length/2 + 1)."""
    steps = torch.arange(length, dtype=torch.float64, device=spacing.device)
    steps = torch.where(steps <= length // 2, steps, steps - length)
    tail = torch.sigmoid(-steps.abs() * spacing[:, None])
    kernel = tail * (1.0 - tail) if derivative else -torch.sign(steps) * tail
    return torch.fft.rfft(kernel, n=length)


@functools.lru_cache(maxsize=16)
def _shared_spectrum(length: int, spacing: float, derivative: bool, device: torch.device) -> torch.Tensor:
    """``_spectrum`` for one spacing shared by every row (the automatic grid), memoized: (1, length/2 + 1)."""
    return _spectrum(length, torch.tensor([spacing], dtype=torch.float64, device=device), derivative)


class Grid:
    """The grid of m rows of w points y = c·d: each row's origin, spacing and node count, and where its
    points fall (``positions``), with the three steps of the module docstring (``ranks``, ``rank_gradient``).

    A point's grid coordinate is u = (y − min y)/h + 1, between node a = ⌊u⌋ (clamped to 1 … nodes − 3, so
    that a − 1 … a + 2 are nodes) and a + 1: u = (d − min d)·(c/h) + 1, or, for rows whose gaps were closed,
    u = offsets·(1/h) + 1 from the stored ``offsets``. ``spacing`` is h per row (m,); ``length`` the FFT
    length L. The deposit and the read-back run as torch operations (``NumbaGrid``: compiled loops;
    ``triton_binned_ranks.TritonGrid``: Triton kernels).
    ``extremes``: each row's (min d, max d), float64 (m,) each, when the caller has them (the row scale's
    statistics); else they are computed here.
    """

    def __init__(
        self,
        d: torch.Tensor,
        factor: torch.Tensor,
        bins: int | None,
        extremes: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        w = d.shape[1]
        self.d = d
        self.factor = factor.to(torch.float64)
        low, high = extremes if extremes is not None else (t.to(torch.float64) for t in torch.aminmax(d, dim=1))
        self.low = low
        spread = (high - low) * self.factor
        automatic = automatic_spacing(w)
        # Closing gaps pays off only once the automatic grid would hold several nodes per point.
        gap_free = 2.0 * SATURATION if bins is not None else max(2.0 * SATURATION, 4 * w * automatic)
        self.offsets: torch.Tensor | None = None
        if spread.max().item() > gap_free:
            self.offsets, spread = _closed_offsets(d, self.factor)
        if bins is not None:
            self.spacing = torch.where(spread > 0, spread, torch.ones_like(spread)) / (bins - 1)
            interior = bins
        else:
            interior = math.ceil(spread.max().item() / automatic) + 1
            if interior > MAX_BINS:
                raise ValueError(
                    f"algorithm='binned' needs {interior} bins per row here (more than {MAX_BINS}) for its error "
                    f"bound {RANK_TOLERANCE}: the rows' values are spread over {spread.max().item():.4g}·tau even "
                    f"after closing gaps; pass bins= to choose fewer (error bound {RANK_ERROR_CONSTANT:.4g}·h⁴ per "
                    "pair, h = row spread / (bins − 1) in units of tau), use a larger tau, or algorithm='dense'"
                )
            self.spacing = torch.full_like(spread, automatic)
        self.uniform = bins is None
        self.nodes = max(interior, 2) + 2
        reach = math.ceil(SATURATION / self.spacing.min().item())
        self.length = 1 << (self.nodes + min(reach, self.nodes) - 1).bit_length()

    @property
    def per_node(self) -> torch.Tensor:
        """(m,) float64: grid coordinates per unit of d (c/h), or of the stored offsets (1/h)."""
        return (self.factor if self.offsets is None else torch.ones_like(self.factor)) / self.spacing

    @functools.cached_property
    def positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(node a (m, w) int64, cubic Lagrange weights (4, m, w) float64) of every point."""
        offsets = self.offsets if self.offsets is not None else self.d.to(torch.float64) - self.low[:, None]
        u = offsets.mul(self.per_node[:, None]).add_(1.0)
        node = torch.floor(u).clamp_(1, self.nodes - 3)
        return node.long(), lagrange_weights(u.sub_(node))

    def spectrum(self, derivative: bool) -> torch.Tensor:
        """rfft of K − ½ sign (``derivative``: K') sampled at the circular node offsets: (m, L/2 + 1), or
        (1, L/2 + 1) for the automatic grid, whose spacing every row shares."""
        if self.uniform:
            return _shared_spectrum(self.length, self.spacing[0].item(), derivative, self.d.device)
        return _spectrum(self.length, self.spacing, derivative)

    def _deposit(self, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Node masses in int64 fixed point (s, m, nodes) of the weight sets: ones, then, if given, the
        weights (m, w); with the float64 scale (s, m, 1) that turns them back into masses."""
        m, w = self.d.shape
        # |Σ_k c_k ℓ_s| <= Λ·w·max|c|, Λ = 5/4; prefix sums stay within the same bound.
        unit = 2.0 ** (_FIXED_POINT_BITS - math.ceil(math.log2(2 * w + 2)))
        scale = torch.full((1 if weights is None else 2, m, 1), unit, dtype=torch.float64, device=self.d.device)
        if weights is not None:
            largest = self._row_largest(weights)
            scale[1, :, 0] = torch.where(largest > 0, unit / largest, 1.0)
        fixed = torch.zeros((scale.shape[0], m, self.nodes), dtype=torch.int64, device=self.d.device)
        self._deposit_taps(weights, scale, fixed)
        return fixed, scale

    def _row_largest(self, weights: torch.Tensor) -> torch.Tensor:
        """(m,) float64: each row's largest |weight| (the ∞-norm: one pass, no |weights| copy)."""
        return torch.linalg.vector_norm(weights, ord=math.inf, dim=1).to(torch.float64)

    def _deposit_taps(self, weights: torch.Tensor | None, scale: torch.Tensor, fixed: torch.Tensor) -> None:
        """Step 1: add every point's four rounded taps to ``fixed`` (s, m, nodes), node a taking the remainder."""
        node, basis = self.positions
        values = (
            scale if weights is None else torch.stack((torch.ones_like(weights), weights)).to(torch.float64) * scale
        )
        taps = torch.round(values * basis[:, None]).long()  # (4, s, m, w)
        # Each point's taps sum exactly to its rounded weight: node a gets the remainder.
        taps[1] = torch.round(values).long().expand_as(taps[1]) - taps[0] - taps[2] - taps[3]
        index = node.expand(scale.shape[0], -1, -1)
        for s in range(4):
            fixed[..., s : self.nodes - 3 + s].scatter_add_(2, index - 1, taps[s])

    def _smoothed(self, fixed: torch.Tensor, scale: torch.Tensor, derivative: bool) -> torch.Tensor:
        """Step 2: the node masses convolved with K − ½ sign (``derivative``: K'), (s, m, L) float64."""
        masses = fixed.to(torch.float64).div_(scale)
        spectrum = self.spectrum(derivative)
        return torch.fft.irfft(torch.fft.rfft(masses, n=self.length).mul_(spectrum), n=self.length)

    def _read(self, values: torch.Tensor) -> torch.Tensor:
        """Step 3 (torch): Σ_t ℓ_t(f) values[..., a − 1 + t] at every point, (s, m, w) float64."""
        node, basis = self.positions
        index = node.expand(values.shape[0], -1, -1)
        total = torch.zeros(index.shape, dtype=torch.float64, device=index.device)
        for s in range(4):
            total.addcmul_(values.gather(2, index + (s - 1)), basis[s])
        return total

    def ranks(self) -> torch.Tensor:
        """R_j = ½ + 1/(w − 1) Σ_k K(y_j − y_k), (m, w) in d's dtype."""
        fixed, scale = self._deposit(None)
        return self._read_ranks(self._smoothed(fixed, scale, False), fixed, scale)

    def rank_gradient(self, grad_ranks: torch.Tensor) -> torch.Tensor:
        """∂L/∂y_j = (G_j A_j − B_j) / (w − 1) for G = ∂L/∂R (m, w), in d's dtype."""
        fixed, scale = self._deposit(grad_ranks)
        return self._read_gradient(self._smoothed(fixed, scale, True), grad_ranks)

    def _read_ranks(self, smoothed: torch.Tensor, fixed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Step 3 of the ranks, with the exact sign part from the masses ``fixed``."""
        w = self.d.shape[1]
        # ½ Σ_b m_b sign(a − b) = ½ (2 P_a − m_a − P_last), P the inclusive prefix sums: exact in int64.
        prefix = torch.cumsum(fixed, dim=2)
        total = prefix[..., -1:].clone()
        sign_part = prefix.mul_(2).sub_(fixed).sub_(total)
        values = smoothed[..., : self.nodes] + sign_part.to(torch.float64).div_(2.0 * scale)
        return self._read(values)[0].div_(w - 1).add_(0.5).to(self.d.dtype)

    def _read_gradient(self, smoothed: torch.Tensor, grad_ranks: torch.Tensor) -> torch.Tensor:
        """Step 3 of the backward: the two sums A and B read back, and ∂L/∂y."""
        w = self.d.shape[1]
        a, b = self._read(smoothed[..., : self.nodes])
        return (grad_ranks.to(torch.float64) * a - b).div_(w - 1).to(self.d.dtype)


class NumbaGrid(Grid):
    """The grid with its deposit and read-back as compiled loops (``numba_loops.py``; CPU tensors, numba
    installed): the same operations in the same order, one pass over each row."""

    def _loop_arguments(self) -> tuple[Any, ...]:
        offsets = self.offsets if self.offsets is not None else self.low.new_empty((1, 1))
        arrays = (self.d, self.low, self.per_node, offsets)
        return (*(t.numpy() for t in arrays), self.offsets is None)

    def _row_largest(self, weights: torch.Tensor) -> torch.Tensor:
        from .numba_loops import row_largest

        largest = torch.empty(weights.shape[0], dtype=torch.float64)
        row_largest(weights.numpy(), largest.numpy())
        return largest

    def _deposit_taps(self, weights: torch.Tensor | None, scale: torch.Tensor, fixed: torch.Tensor) -> None:
        from .numba_loops import deposit

        values = (weights if weights is not None else self.d)[None]
        deposit(*self._loop_arguments(), values.numpy(), scale[..., 0].numpy(), fixed.numpy())

    def _read_ranks(self, smoothed: torch.Tensor, fixed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        from .numba_loops import read_ranks

        out = torch.empty_like(self.d)
        read_ranks(*self._loop_arguments(), smoothed.numpy(), fixed.numpy(), scale[..., 0].numpy(), out.numpy())
        return out

    def _read_gradient(self, smoothed: torch.Tensor, grad_ranks: torch.Tensor) -> torch.Tensor:
        from .numba_loops import read_gradient

        out = torch.empty_like(self.d)
        read_gradient(*self._loop_arguments(), self.nodes, smoothed.numpy(), grad_ranks.numpy(), out.numpy())
        return out


class BinnedRanks(RankStage):
    """The binned rank stage: soft ranks within RANK_ERROR_CONSTANT·h⁴·w/(w − 1) of the dense ones
    (``bins=None``, the automatic grid: within RANK_TOLERANCE), on a ``Grid`` per block and direction."""

    grid: type[Grid] = Grid

    def __init__(self, bins: int | None) -> None:
        self.bins = bins

    @classmethod
    def from_settings(cls, settings: Settings) -> BinnedRanks:
        return cls(settings.plan.bins)

    def ranks(self, d: torch.Tensor, scale: RowScale) -> torch.Tensor:
        return self.grid(d, scale.factor, self.bins, (scale.low, scale.high)).ranks()

    def backward(self, d: torch.Tensor, scale: RowScale, grad_ranks: torch.Tensor) -> torch.Tensor:
        return self.grid(d, scale.factor, self.bins, (scale.low, scale.high)).rank_gradient(grad_ranks)


class NumbaBinnedRanks(BinnedRanks):
    """The binned rank stage on a ``NumbaGrid``."""

    grid = NumbaGrid
