"""The reference backend: docs/spec.md's formulas written the obvious way, differentiated by autograd.

It is the oracle the fast paths are tested against, so it favours clarity over speed and shares no
code with them: the soft ranks come from a dense (n, n, n) tensor of pairwise sigmoid terms, whose
working memory grows as n³ (``plan.py`` refuses sizes above its limit). Autograd differentiates it
to any order, so it is also the backend for double backward.

Numerics (docs/spec.md, "Numerics"): dissimilarities are computed in float64 and returned in the
computation dtype; with ``normalize="row_std"`` the euclidean kinds use features divided by 2^e, e the
binary exponent of their largest deviation from the coordinate-wise median (the row scale's 1e-12 is
relative to the features' magnitude); the sigmoid's argument multiplies differences by 1/τ clamped to
the dtype's largest value; and a non-finite feature makes every result NaN.
"""

from __future__ import annotations

import torch

from .options import COSINE_NORM_EPS, ROW_STD_EPS, SPEARMAN_EPS, LossOptions


def pairwise_dissimilarity(x: torch.Tensor, kind: str) -> torch.Tensor:
    """(n, d) features → (n, n) dissimilarities δ(x_i, x_j) in x's dtype, zero on the diagonal."""
    x64 = x.to(torch.float64)
    if kind == "cosine":
        norms = x64.norm(dim=1).clamp_min(COSINE_NORM_EPS)
        d = 1.0 - (x64 @ x64.T) / (norms[:, None] * norms[None, :])
    else:
        diff = x64[:, None, :] - x64[None, :, :]
        squared = (diff * diff).sum(dim=-1)
        if kind == "sqeuclidean":
            d = squared
        else:
            # sqrt has an infinite derivative at 0: route zeros around it so that duplicate rows
            # (and the diagonal) get a zero gradient, as the spec asks (and NaN stays NaN).
            zero = squared == 0
            safe = torch.where(zero, torch.ones_like(squared), squared)
            d = torch.where(zero, torch.zeros_like(squared), safe.sqrt())
    return (d * (1.0 - torch.eye(x.shape[0], dtype=torch.float64, device=x.device))).to(x.dtype)


def _off_diagonal(n: int, device: torch.device) -> torch.Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


def _relative_units(x: torch.Tensor, kind: str, normalize: str) -> torch.Tensor:
    """x divided by 2^e, e the binary exponent of max |x − median(x)| (euclidean kinds with "row_std")."""
    if kind == "cosine" or normalize != "row_std":
        return x
    deviation = (x - x.median(dim=0).values).abs().amax().detach()
    # An exact power of two, applied in float64 (torch.ldexp has no gradient with respect to x).
    unit = torch.pow(2.0, -torch.frexp(deviation.to(torch.float64))[1].to(torch.float64))
    return (x.to(torch.float64) * unit).to(x.dtype)


def scale_rows(d: torch.Tensor, normalize: str) -> torch.Tensor:
    """D~_ij = D_ij / (s_i + 1e-12), s_i the population std of {D_ij : j != i} ("row_std")."""
    if normalize == "none":
        return d
    n = d.shape[0]
    off = _off_diagonal(n, d.device)
    mean = (d * off).sum(dim=1, keepdim=True) / (n - 1)
    var = (((d - mean) * off) ** 2).sum(dim=1, keepdim=True) / (n - 1)
    # A row of equal distances has var = 0, where sqrt has no derivative: its scale gets a zero one.
    positive = var > 0
    std = torch.where(positive, torch.where(positive, var, torch.ones_like(var)).sqrt(), torch.zeros_like(var))
    return d / (std + ROW_STD_EPS)


def ranks_from_scaled(d: torch.Tensor, tau: float, hard: bool) -> torch.Tensor:
    """R_ij = 1/(n-2) Σ_{k∉{i,j}} σ((D~_ij − D~_ik)/τ); Heaviside (½ at 0) if ``hard``. Zero diagonal."""
    n = d.shape[0]
    inverse_tau = min(1.0 / tau, torch.finfo(d.dtype).max)
    z = (d[:, :, None] - d[:, None, :]) * inverse_tau  # z[i, j, k]
    terms = (torch.sign(z) + 1.0) / 2.0 if hard else torch.sigmoid(z)
    off = _off_diagonal(n, d.device)
    k_valid = off[:, None, :] & off[:, :, None] & ~torch.eye(n, dtype=torch.bool, device=d.device)[None]
    ranks = (terms * k_valid).sum(dim=2) / (n - 2)
    return ranks * off


def _nan_if_not_finite(result: torch.Tensor, *features: torch.Tensor) -> torch.Tensor:
    finite = torch.stack([torch.isfinite(x).all() for x in features]).all()
    return result + torch.where(finite, 0.0, torch.nan).to(result.dtype)


def rank_matrix(x: torch.Tensor, options: LossOptions, hard: bool) -> torch.Tensor:
    """(n, d) features → (n, n) soft (or hard) ranks R with a zero diagonal."""
    units = _relative_units(x, options.dissimilarity, options.normalize)
    d = scale_rows(pairwise_dissimilarity(units, options.dissimilarity), options.normalize)
    ranks = _nan_if_not_finite(ranks_from_scaled(d, options.tau, hard), x)
    return ranks.detach() if hard else ranks


def _row_discrepancy(rs: torch.Tensor, rt: torch.Tensor, discrepancy: str) -> torch.Tensor:
    """ℓ_i from student and teacher ranks (n, n), zero diagonals; moments over j != i."""
    n = rs.shape[0]
    off = _off_diagonal(n, rs.device)
    if discrepancy == "mse":
        return (((rs - rt) * off) ** 2).sum(dim=1) / (n - 1)
    if discrepancy == "reciprocal_rank_mse":
        # Each candidate weighted by its reciprocal soft 1-based rank 1 + (n − 2) R^T_ij, normalised over the row.
        weight = off / (1.0 + (n - 2) * rt)
        return (weight * (rs - rt) ** 2).sum(dim=1) / weight.sum(dim=1)
    ms = rs.sum(dim=1, keepdim=True) / (n - 1)
    mt = rt.sum(dim=1, keepdim=True) / (n - 1)
    cs = (rs - ms) * off
    ct = (rt - mt) * off
    cov = (cs * ct).sum(dim=1) / (n - 1)
    var_s = (cs * cs).sum(dim=1) / (n - 1)
    var_t = (ct * ct).sum(dim=1) / (n - 1)
    return 1.0 - cov / torch.sqrt(var_s * var_t + SPEARMAN_EPS)


def row_losses(student: torch.Tensor, teacher: torch.Tensor, options: LossOptions) -> torch.Tensor:
    """Per-reference losses ℓ_i for the rows in ``options.row_range(n)``, shape (end − start,).

    student (n, p) and teacher (n, q) are 2-D tensors of one floating dtype on one device.
    """
    start, end = options.row_range(student.shape[0])
    rs = rank_matrix(student, options, hard=False)
    rt = rank_matrix(teacher, options, hard=options.teacher_ranks == "hard")
    return _row_discrepancy(rs, rt, options.discrepancy)[start:end]
