"""Soft ranks by binning (``algorithm="binned"``): each row's sigmoid sum as a 1-D convolution on a grid.

Row r of an (m, w) tensor holds the w = n − 1 scaled dissimilarities x_j = D~_ij of one reference i
(the candidate layout of ``torch_backend.py``). With K(u) = σ(u/τ) − ½ = ½ tanh(u / (2τ)), odd, so
that its k = j term vanishes:

    R_j = ½ + 1/(n−2) Σ_k K(x_j − x_k)

and the backward of SPEC.md, with K'(u) = σ'(u/τ) = σ(u/τ) σ(−u/τ):

    ∂L/∂x_j = (G_j A_j − B_j) / (τ (n−2)),   A_j = Σ_k K'(x_j − x_k),   B_j = Σ_k K'(x_j − x_k) G_k

(the k = j terms of A and B cancel in G_j A_j − B_j, so they are kept). Every such sum
Σ_k c_k K(x_j − x_k) is a kernel sum, computed for all j of a row in O(w + L log L) on a grid
y_a = lo + a·h, a = 0 … B − 1, instead of the dense O(w²):

    1. deposit   point k at u = (x_k − lo)/h, a = ⌊u⌋, f = u − a puts c_k (1 − f) on node a and
                 c_k f on node a + 1 (cloud-in-cell);
    2. convolve  M_a = Σ_b m_b K((a − b) h) for every node;
    3. read      the sum at x_j is (1 − f_j) M_{a_j} + f_j M_{a_j + 1}.

The three steps are the bilinear interpolation of K(x − y) between grid nodes, so each pair's
term is off by at most (h²/4)·max|K''|: the normalized soft ranks are within
RANK_ERROR_CONSTANT·(h/τ)² of the dense ones, RANK_ERROR_CONSTANT = max|σ''|/4 = 1/(24√3), and
A_j/(n−2) within max|σ'''|/4·(h/τ)² = (h/τ)²/32. Automatic grids use
h = τ·sqrt(RANK_TOLERANCE / RANK_ERROR_CONSTANT), the same for every row, so a row's result
depends only on that row (and not on which rows share its batch, block or process).

Step 2 splits K = ½ sign + (K − ½ sign) at the nodes: the sign part is exact, from prefix sums of
the masses; the rest, −sign(u) σ(−|u|/τ), and K' decay like e^(−|u|/τ), so an FFT of length
L >= B + SATURATION·τ/h (zero padded, rounded up to a power of two) convolves them with a
wrap-around error below e^(−SATURATION) per pair.

Gaps: for the same reason, stretches of a row with no point that are wider than SATURATION·τ
are shortened to that width before gridding: the grid then spans the occupied part of the row,
and an outlier costs no bins. Each pair across such a gap stays at least SATURATION·τ apart,
where its terms change by < e^(−SATURATION).

Determinism: deposits are summed in int64 fixed point (each row's weights scaled so the row's
total fits), and integer sums do not depend on the order of the additions.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import FunctionCtx, once_differentiable

# max|σ''|/4 = 1/(24√3): bound on the normalized soft rank error per (h/τ)² (module docstring).
RANK_ERROR_CONSTANT = 1.0 / (24.0 * math.sqrt(3.0))
# Bound on the normalized soft rank error met by the automatic grid.
RANK_TOLERANCE = 1e-5
# Kernel tails beyond SATURATION·τ are dropped, and empty stretches shortened to it (e^(−30) ≈ 1e-13).
SATURATION = 30.0
# Largest grid (nodes per row) a call may use, automatic or given as ``bins``.
MAX_BINS = 2**22
# Bits of the int64 fixed-point deposits left for the values (the rest absorbs the row's sum).
_FIXED_POINT_BITS = 61


def automatic_spacing(tau: float) -> float:
    """Grid spacing h (scaled units) whose error bound RANK_ERROR_CONSTANT·(h/τ)² is RANK_TOLERANCE."""
    return tau * math.sqrt(RANK_TOLERANCE / RANK_ERROR_CONSTANT)


def _close_gaps(x: torch.Tensor, tau: float, bins: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets x − min of each row of x (c, w), with every empty stretch wider than SATURATION·τ
    shortened to SATURATION·τ (module docstring), and each row's spread (largest offset), (c, 1).
    Coarse cells of that width are kept when they hold a point or follow one that does; the others
    are removed.

    Automatic grids skip this while their node count stays below 2 w (closing gaps then saves
    less than it costs); a row's soft ranks change by less than e^(−SATURATION) either way."""
    width = SATURATION * tau
    low, high = torch.aminmax(x, dim=1, keepdim=True)
    offsets, spreads = x - low, high - low
    spread = spreads.max().item()
    if spread <= 2.0 * width or (bins is None and spread <= 2 * x.shape[1] * automatic_spacing(tau)):
        return offsets, spreads
    if spread / width > MAX_BINS:
        raise ValueError(
            f"algorithm='binned' cannot grid rows spread over {spread:.3g} scaled units at tau={tau}: "
            f"more than {MAX_BINS} cells of width {width:.3g}; use normalize='row_std', a larger tau "
            "or algorithm='dense'"
        )
    cell = torch.floor(offsets / width).long()
    occupied = torch.zeros((x.shape[0], int(cell.max()) + 2), dtype=torch.bool, device=x.device)
    occupied.scatter_(1, cell, True)
    kept = occupied.clone()
    kept[:, 1:] |= occupied[:, :-1]
    removed_before = torch.cumsum(~kept, dim=1)
    if not bool(removed_before[:, -1].any()):
        return offsets, spreads
    offsets -= removed_before.gather(1, cell).to(x.dtype) * width
    return offsets, offsets.amax(dim=1, keepdim=True)


def _grid_size(spread: torch.Tensor, tau: float, bins: int | None) -> tuple[torch.Tensor, int]:
    """Grid spacing h (a scalar tensor, or (c, 1) per row) and node count B for rows of spreads (c, 1)."""
    if bins is not None:
        return torch.where(spread > 0, spread, torch.ones_like(spread)) / (bins - 1), bins
    nodes = math.ceil(spread.max().item() / automatic_spacing(tau)) + 1
    if nodes > MAX_BINS:
        raise ValueError(
            f"algorithm='binned' needs {nodes} bins per row here (more than {MAX_BINS}) for its error bound "
            f"{RANK_TOLERANCE} at tau={tau}; pass bins= to choose fewer (error bound "
            f"{RANK_ERROR_CONSTANT:.4f}·(h/tau)², h = row spread / (bins − 1)) or use algorithm='dense'"
        )
    return torch.tensor(automatic_spacing(tau), dtype=spread.dtype, device=spread.device), max(2, nodes)


class Grid:
    """Where each point of c rows of w values falls on a grid of ``nodes`` nodes per row.

    ``node`` (c, w) is the left node a (0 … nodes − 2), ``fraction`` (c, w) the position f ∈ [0, 1]
    between a and a + 1, ``spacing`` the grid step h: a scalar tensor, or (c, 1) per row.
    ``length`` is the FFT length L (module docstring).
    """

    def __init__(self, node: torch.Tensor, fraction: torch.Tensor, spacing: torch.Tensor, nodes: int, tau: float):
        self.node, self.fraction, self.spacing, self.nodes, self.tau = node, fraction, spacing, nodes, tau
        reach = min(nodes - 1, math.ceil(SATURATION * tau / spacing.min().item()))
        self.length = 1 << (nodes + reach - 1).bit_length()

    @classmethod
    def of(cls, x: torch.Tensor, tau: float, bins: int | None) -> "Grid":
        """The grid of the rows of x (c, w): automatic (``bins=None``) or ``bins`` nodes per row."""
        offsets, spread = _close_gaps(x, tau, bins)
        spacing, nodes = _grid_size(spread, tau, bins)
        u = offsets.div_(spacing).clamp_(0.0, nodes - 1)
        node = torch.floor(u).clamp_max_(nodes - 2)
        return cls(node.long(), u.sub_(node), spacing, nodes, tau)

    def spectrum(self, derivative: bool) -> torch.Tensor:
        """rfft of K − ½ sign (``derivative``: K') sampled at the circular node offsets: (1 or c, L/2 + 1)."""
        steps = torch.arange(self.length, dtype=self.fraction.dtype, device=self.node.device)
        steps = torch.where(steps <= self.length // 2, steps, steps - self.length)
        tail = torch.sigmoid(-steps.abs() * self.spacing.reshape(-1, 1) / self.tau)
        kernel = tail * (1.0 - tail) if derivative else -torch.sign(steps) * tail
        return torch.fft.rfft(kernel, n=self.length)

    def _deposit(self, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Node masses of s weight sets (s, c, w) (None: one set of ones) in int64 fixed point
        (s, c, nodes), with the scale (s, c, 1) that turns them back into masses."""
        headroom = _FIXED_POINT_BITS - math.ceil(math.log2(self.node.shape[1] + 1))
        dtype = self.fraction.dtype
        if weights is None:
            scale = torch.full((1, 1, 1), 2.0**headroom, dtype=dtype, device=self.node.device)
            right = torch.round(self.fraction * scale[0]).long()[None]
            left = (1 << headroom) - right
        else:
            scale = weights.abs().amax(dim=2, keepdim=True)
            scale = torch.where(scale > 0, (2.0**headroom) / scale, torch.ones_like(scale))
            scaled = weights * scale
            right = torch.round(scaled * self.fraction).long()
            left = torch.round(scaled).long().sub_(right)
        fixed = torch.zeros((left.shape[0], *self.node.shape[:1], self.nodes), dtype=torch.int64, device=left.device)
        index = self.node.expand(left.shape[0], -1, -1)
        fixed.scatter_add_(2, index, left)
        fixed[..., 1:].scatter_add_(2, index, right)
        return fixed, scale

    def kernel_sums(self, weights: torch.Tensor | None, derivative: bool, spectrum: torch.Tensor) -> torch.Tensor:
        """Σ_k c_k K(x_j − x_k) (``derivative``: K') at every point (s, c, w), for weight sets
        c (s, c, w) (None: ones) and this grid's ``spectrum(derivative)``."""
        fixed, scale = self._deposit(weights)
        masses = fixed.to(scale.dtype).div_(scale)
        smoothed = torch.fft.irfft(torch.fft.rfft(masses, n=self.length).mul_(spectrum), n=self.length)
        smoothed = smoothed[..., : self.nodes]
        if not derivative:
            # ½ Σ_b m_b sign(a − b) = ½ (2 P_a − m_a − P_last), P the inclusive prefix sums: exact in int64.
            prefix = torch.cumsum(fixed, dim=2)
            total = prefix[..., -1:].clone()
            below_minus_above = prefix.mul_(2).sub_(fixed).sub_(total)
            smoothed += below_minus_above.to(scale.dtype).div_(2.0 * scale)
        index = self.node.expand(smoothed.shape[0], -1, -1)
        return torch.lerp(smoothed.gather(2, index), smoothed[..., 1:].gather(2, index), self.fraction)


class BinnedSoftRanks(torch.autograd.Function):
    """(m, w) scaled candidate dissimilarities → (m, w) soft ranks; see the module docstring.

    The grid (node, fraction, spacing) is kept for the backward.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, scaled: torch.Tensor, tau: float, bins: int | None) -> torch.Tensor:
        grid = Grid.of(scaled.detach(), tau, bins)
        sums = grid.kernel_sums(None, False, grid.spectrum(False))[0]
        ctx.save_for_backward(grid.node, grid.fraction, grid.spacing)
        ctx.tau, ctx.nodes = tau, grid.nodes
        return sums.div_(scaled.shape[1] - 1).add_(0.5)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grid = Grid(*ctx.saved_tensors, ctx.nodes, ctx.tau)
        a, b = grid.kernel_sums(torch.stack((torch.ones_like(g), g)), True, grid.spectrum(True))
        return (g * a - b).div_(ctx.tau * (g.shape[1] - 1)), None, None


def binned_soft_ranks(scaled: torch.Tensor, tau: float, bins: int | None) -> torch.Tensor:
    """Soft ranks R (m, w) of scaled candidate dissimilarities (m, w), w = n − 1 >= 2, by binning.

    Within RANK_ERROR_CONSTANT·(h/τ)² of the dense soft ranks, h the grid spacing: automatic
    (``bins=None``: the bound is RANK_TOLERANCE) or each row's spread (after closing gaps) over
    ``bins − 1``. Differentiable in ``scaled``. Memory: a few (m, L) buffers, L <= 4 B, and the grid
    (about three (m, w) tensors) kept for the backward; callers bound it by passing blocks of rows.
    """
    return BinnedSoftRanks.apply(scaled, tau, bins)
