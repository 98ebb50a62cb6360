"""The binned rank stage (``algorithm="binned"``): each row's sigmoid sums as a 1-D convolution on a grid.

Row r of candidate dissimilarities d (m, w) with factor c gives the points y_j = c·d_j, in units of τ
(``row_scale.py``). With K(u) = σ(u) − ½ = ½ tanh(u/2), odd, so that its k = j term vanishes:

    R_j = ½ + 1/(w−1) Σ_k K(y_j − y_k)

and SPEC's backward, with K'(u) = σ'(u) = σ(u) σ(−u):

    ∂L/∂y_j = (G_j A_j − B_j) / (w − 1),   A_j = Σ_k K'(y_j − y_k),   B_j = Σ_k K'(y_j − y_k) G_k

(the k = j terms of A and B cancel in G_j A_j − B_j, so they are kept). Every such sum
Σ_k c_k K(y_j − y_k) is a kernel sum, computed for all j of a row in O(w + L log L) on a grid
z_a = lo + a·h, a = 0 … B − 1, instead of the dense O(w²):

    1. deposit   point k at u = (y_k − lo)/h, a = ⌊u⌋, f = u − a puts c_k (1 − f) on node a and
                 c_k f on node a + 1 (cloud-in-cell);
    2. convolve  M_a = Σ_b m_b K((a − b) h) for every node;
    3. read      the sum at y_j is (1 − f_j) M_{a_j} + f_j M_{a_j + 1}.

The three steps are the bilinear interpolation of K(y − y') between grid nodes, so each pair's term
is off by at most (h²/4)·max|K''|: the normalized soft ranks are within RANK_ERROR_CONSTANT·h² of the
dense ones, RANK_ERROR_CONSTANT = max|σ''|/4 = 1/(24√3), and A_j/(w−1) within max|σ'''|/4·h² = h²/32.
Automatic grids use h = AUTOMATIC_SPACING = sqrt(RANK_TOLERANCE / RANK_ERROR_CONSTANT), the same for
every row, so a row's result depends only on that row (not on which rows share its batch, block or
process). With ``bins`` = B, each row's grid spans its (gap-closed) spread with B nodes.

Step 2 splits K = ½ sign + (K − ½ sign) at the nodes: the sign part is exact, from prefix sums of the
masses; the rest, −sign(u) σ(−|u|), and K' decay like e^(−|u|), so an FFT of length
L >= B + SATURATION/h (zero padded, rounded up to a power of two) convolves them with a wrap-around
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

import math

import torch

from ..options import MAX_BINS

# max|σ''|/4 = 1/(24√3): bound on the normalized soft rank error per h² (module docstring).
RANK_ERROR_CONSTANT = 1.0 / (24.0 * math.sqrt(3.0))
# Bound on the normalized soft rank error met by the automatic grid.
RANK_TOLERANCE = 1e-5
# Grid spacing (units of τ) of the automatic grid: its error bound RANK_ERROR_CONSTANT·h² is RANK_TOLERANCE.
AUTOMATIC_SPACING = math.sqrt(RANK_TOLERANCE / RANK_ERROR_CONSTANT)
# Kernel tails beyond SATURATION are dropped, and wider gaps shortened to it (e^(−30) ≈ 1e-13).
SATURATION = 30.0
# Bits of the int64 fixed-point deposits left for the values (the rest absorbs the row's sum).
_FIXED_POINT_BITS = 61


def _offsets(d: torch.Tensor, factor: torch.Tensor, bins: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets y − min y (float64, (m, w)) of each row's points y = c·d, with every gap wider than
    SATURATION shortened to SATURATION (module docstring), and each row's spread (m, 1).

    Gaps are left alone while no row spans more than 2·SATURATION, or (automatic grids) while the
    grid stays below 2 w nodes: closing them then saves less than the sort costs."""
    d64 = d.to(torch.float64)
    c = factor.to(torch.float64)[:, None]
    low, high = torch.aminmax(d64, dim=1, keepdim=True)
    spreads = (high - low) * c
    spread = spreads.max().item()
    if spread <= 2.0 * SATURATION or (bins is None and spread <= 2 * d.shape[1] * AUTOMATIC_SPACING):
        return (d64 - low).mul_(c), spreads
    ordered, order = d64.sort(dim=1)
    # Differences first, then the factor: a gap c·Δ that overflows is inf, shortened like any other.
    gaps = torch.diff(ordered, dim=1).mul_(c).clamp_(max=SATURATION)
    positions = torch.cat((torch.zeros_like(spreads), gaps.cumsum_(dim=1)), dim=1)
    return torch.empty_like(d64).scatter_(1, order, positions), positions[:, -1:]


def _grid_size(spread: torch.Tensor, bins: int | None) -> tuple[torch.Tensor, int]:
    """Grid spacing h (a scalar tensor, or (m, 1) per row) and node count B for rows of spreads (m, 1)."""
    if bins is not None:
        return torch.where(spread > 0, spread, torch.ones_like(spread)) / (bins - 1), bins
    nodes = math.ceil(spread.max().item() / AUTOMATIC_SPACING) + 1
    if nodes > MAX_BINS:
        raise ValueError(
            f"algorithm='binned' needs {nodes} bins per row here (more than {MAX_BINS}) for its error bound "
            f"{RANK_TOLERANCE}: the rows' values are spread over {spread.max().item():.4g}·tau even after "
            f"closing gaps; pass bins= to choose fewer (error bound {RANK_ERROR_CONSTANT:.4f}·(h/tau)², "
            "h = row spread / (bins − 1)), use a larger tau, or algorithm='dense'"
        )
    return torch.tensor(AUTOMATIC_SPACING, dtype=spread.dtype, device=spread.device), max(2, nodes)


class Grid:
    """Where each point of m rows of w points falls on a grid of ``nodes`` nodes per row.

    ``node`` (m, w) is the left node a (0 … nodes − 2), ``fraction`` (m, w) the position f ∈ [0, 1]
    between a and a + 1 (float64), ``spacing`` the grid step h: a scalar tensor, or (m, 1) per row.
    ``length`` is the FFT length L (module docstring).
    """

    def __init__(self, d: torch.Tensor, factor: torch.Tensor, bins: int | None):
        offsets, spread = _offsets(d, factor, bins)
        self.spacing, self.nodes = _grid_size(spread, bins)
        u = offsets.div_(self.spacing).clamp_(0.0, self.nodes - 1)
        node = torch.floor(u).clamp_max_(self.nodes - 2)
        self.node, self.fraction = node.long(), u.sub_(node)
        reach = min(self.nodes - 1, math.ceil(SATURATION / self.spacing.min().item()))
        self.length = 1 << (self.nodes + reach - 1).bit_length()

    def spectrum(self, derivative: bool) -> torch.Tensor:
        """rfft of K − ½ sign (``derivative``: K') sampled at the circular node offsets: (1 or m, L/2 + 1)."""
        steps = torch.arange(self.length, dtype=torch.float64, device=self.node.device)
        steps = torch.where(steps <= self.length // 2, steps, steps - self.length)
        tail = torch.sigmoid(-steps.abs() * self.spacing.reshape(-1, 1))
        kernel = tail * (1.0 - tail) if derivative else -torch.sign(steps) * tail
        return torch.fft.rfft(kernel, n=self.length)

    def _deposit(self, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Node masses of s weight sets (s, m, w) (None: one set of ones) in int64 fixed point
        (s, m, nodes), with the float64 scale (s, m, 1) that turns them back into masses."""
        headroom = _FIXED_POINT_BITS - math.ceil(math.log2(self.node.shape[1] + 1))
        if weights is None:
            scale = torch.full((1, 1, 1), 2.0**headroom, dtype=torch.float64, device=self.node.device)
            right = torch.round(self.fraction * scale[0]).long()[None]
            left = (1 << headroom) - right
        else:
            weights = weights.to(torch.float64)
            scale = weights.abs().amax(dim=2, keepdim=True)
            scale = torch.where(scale > 0, (2.0**headroom) / scale, torch.ones_like(scale))
            scaled = weights * scale
            right = torch.round(scaled * self.fraction).long()
            left = torch.round(scaled).long().sub_(right)
        fixed = torch.zeros((left.shape[0], self.node.shape[0], self.nodes), dtype=torch.int64, device=left.device)
        index = self.node.expand(left.shape[0], -1, -1)
        fixed.scatter_add_(2, index, left)
        fixed[..., 1:].scatter_add_(2, index, right)
        return fixed, scale

    def kernel_sums(self, weights: torch.Tensor | None, derivative: bool) -> torch.Tensor:
        """Σ_k c_k K(y_j − y_k) (``derivative``: K') at every point, float64 (s, m, w), for weight sets
        c (s, m, w) (None: ones)."""
        fixed, scale = self._deposit(weights)
        masses = fixed.to(torch.float64).div_(scale)
        spectrum = self.spectrum(derivative)
        smoothed = torch.fft.irfft(torch.fft.rfft(masses, n=self.length).mul_(spectrum), n=self.length)
        smoothed = smoothed[..., : self.nodes]
        if not derivative:
            # ½ Σ_b m_b sign(a − b) = ½ (2 P_a − m_a − P_last), P the inclusive prefix sums: exact in int64.
            prefix = torch.cumsum(fixed, dim=2)
            total = prefix[..., -1:].clone()
            below_minus_above = prefix.mul_(2).sub_(fixed).sub_(total)
            smoothed += below_minus_above.to(torch.float64).div_(2.0 * scale)
        index = self.node.expand(smoothed.shape[0], -1, -1)
        return torch.lerp(smoothed.gather(2, index), smoothed[..., 1:].gather(2, index), self.fraction)


def binned_ranks(d: torch.Tensor, factor: torch.Tensor, bins: int | None) -> torch.Tensor:
    """Soft ranks R (m, w) of candidate rows d (m, w), w >= 2, with factors (m,), by binning: within
    RANK_ERROR_CONSTANT·h² of the dense ones (``bins=None``: within RANK_TOLERANCE)."""
    sums = Grid(d, factor, bins).kernel_sums(None, False)[0]
    return sums.div_(d.shape[1] - 1).add_(0.5).to(d.dtype)


def binned_ranks_backward(
    d: torch.Tensor, factor: torch.Tensor, grad_ranks: torch.Tensor, bins: int | None
) -> torch.Tensor:
    """∂L/∂y (m, w), y = factor·d, from G = ∂L/∂R (m, w), on the same grid as the forward."""
    g = grad_ranks.to(torch.float64)
    a, b = Grid(d, factor, bins).kernel_sums(torch.stack((torch.ones_like(g), g)), True)
    return (g * a - b).div_(d.shape[1] - 1).to(d.dtype)
