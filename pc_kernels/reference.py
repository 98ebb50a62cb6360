"""The reference backend: SPEC.md's formulas written the obvious way, differentiated by autograd.

It is the oracle the fast backends are tested against, so it favours clarity over speed: the
soft ranks are computed from a dense (n, n, n) tensor of pairwise sigmoid terms. Because that
working memory grows as n³, every entry point first estimates it and refuses sizes above
``memory_limit_bytes()`` with an error that names the backends that do not build n³ tensors.

The limit defaults to 4 GiB and is set by the environment variable
``PC_KERNELS_REFERENCE_MEMORY_LIMIT`` (bytes) or by ``set_memory_limit``.
"""

from __future__ import annotations

import os

import torch

from .options import COSINE_NORM_EPS, ROW_STD_EPS, SPEARMAN_EPS, LossOptions

_DEFAULT_MEMORY_LIMIT = 4 * 2**30
_memory_limit: int | None = None

# (n, n, n) tensors alive at once per soft side, autograd's saved tensors included
# (measured: about 6 n³ buffers for fwd+bwd with two soft sides, at n = 256 and 384).
_CUBIC_BUFFERS_PER_SIDE = 3


def memory_limit_bytes() -> int:
    """The largest n³ working memory (bytes) the reference backend accepts."""
    if _memory_limit is not None:
        return _memory_limit
    return int(os.environ.get("PC_KERNELS_REFERENCE_MEMORY_LIMIT", _DEFAULT_MEMORY_LIMIT))


def set_memory_limit(limit_bytes: int | None) -> None:
    """Set the reference backend's memory limit in bytes; ``None`` restores the default/env value."""
    global _memory_limit
    if limit_bytes is not None and (not isinstance(limit_bytes, int) or limit_bytes <= 0):
        raise ValueError(f"limit_bytes must be None or a positive int; got {limit_bytes!r}")
    _memory_limit = limit_bytes


def estimated_bytes(n: int, d: int, itemsize: int, sides: int) -> int:
    """Estimated working memory of the reference formulas for n samples of d features."""
    return max(_CUBIC_BUFFERS_PER_SIDE * sides * n**3, n * n * d) * itemsize


def _check_size(n: int, d: int, dtype: torch.dtype, sides: int) -> None:
    need = estimated_bytes(n, d, torch.empty((), dtype=dtype).element_size(), sides)
    limit = memory_limit_bytes()
    if need > limit:
        raise ValueError(
            f"backend='reference' would need about {need / 2**30:.2f} GiB of n³ working memory "
            f"for n = {n}, above its limit of {limit / 2**30:.2f} GiB "
            "(PC_KERNELS_REFERENCE_MEMORY_LIMIT or pc_kernels.reference.set_memory_limit); "
            "use backend='torch' (any device) or backend='triton' (CUDA), which never build n³ tensors"
        )


def pairwise_dissimilarity(x: torch.Tensor, kind: str) -> torch.Tensor:
    """(n, d) features → (n, n) dissimilarities δ(x_i, x_j), zero on the diagonal."""
    _check_size(x.shape[0], x.shape[1], x.dtype, sides=0)
    if kind == "cosine":
        norms = x.norm(dim=1).clamp_min(COSINE_NORM_EPS)
        d = 1.0 - (x @ x.T) / (norms[:, None] * norms[None, :])
    else:
        diff = x[:, None, :] - x[None, :, :]
        squared = (diff * diff).sum(dim=-1)
        if kind == "sqeuclidean":
            d = squared
        else:
            # sqrt has an infinite derivative at 0: route zeros around it so that duplicate
            # rows (and the diagonal) get a zero gradient, as SPEC.md asks.
            positive = squared > 0
            safe = torch.where(positive, squared, torch.ones_like(squared))
            d = torch.where(positive, safe.sqrt(), torch.zeros_like(squared))
    return d * (1.0 - torch.eye(x.shape[0], dtype=x.dtype, device=x.device))


def _off_diagonal(n: int, device: torch.device) -> torch.Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


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
    z = (d[:, :, None] - d[:, None, :]) / tau  # z[i, j, k]
    terms = (torch.sign(z) + 1.0) / 2.0 if hard else torch.sigmoid(z)
    off = _off_diagonal(n, d.device)
    k_valid = off[:, None, :] & off[:, :, None] & ~torch.eye(n, dtype=torch.bool, device=d.device)[None]
    ranks = (terms * k_valid).sum(dim=2) / (n - 2)
    return ranks * off


def rank_matrix(x: torch.Tensor, options: LossOptions, hard: bool) -> torch.Tensor:
    """(n, d) features → (n, n) soft (or hard) ranks R with a zero diagonal."""
    _check_size(x.shape[0], x.shape[1], x.dtype, sides=1)
    d = scale_rows(pairwise_dissimilarity(x, options.dissimilarity), options.normalize)
    ranks = ranks_from_scaled(d, options.tau, hard)
    return ranks.detach() if hard else ranks


def _row_discrepancy(rs: torch.Tensor, rt: torch.Tensor, discrepancy: str) -> torch.Tensor:
    """ℓ_i from student and teacher ranks (n, n), zero diagonals; moments over j != i."""
    n = rs.shape[0]
    off = _off_diagonal(n, rs.device)
    if discrepancy == "mse":
        return (((rs - rt) * off) ** 2).sum(dim=1) / (n - 1)
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
    n = student.shape[0]
    start, end = options.row_range(n)
    hard_teacher = options.teacher_ranks == "hard"
    _check_size(n, max(student.shape[1], teacher.shape[1]), student.dtype, sides=1 if hard_teacher else 2)
    rs = rank_matrix(student, options, hard=False)
    rt = rank_matrix(teacher, options, hard=hard_teacher)
    return _row_discrepancy(rs, rt, options.discrepancy)[start:end]
