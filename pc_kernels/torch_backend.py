"""The memory-bounded PyTorch backend: exact, any device, never an n³ tensor.

Only the reference rows [start, end) asked for are computed, each against the whole batch.
Every row is kept in the *candidate layout*: the n − 1 dissimilarities of reference i to the
candidates j != i, the diagonal removed, so every later step (row scale, ranks, discrepancy)
is a plain reduction over the last dimension. The O(n²) steps (dissimilarities, row scale,
discrepancy) are differentiated by autograd; the O(n³) soft ranks are a ``torch.autograd.
Function`` with a hand-written backward that recomputes the sigmoids in chunks of reference
rows (``torch_soft_ranks.py``).

Memory: besides O(n (n + p + q)) for the rows, the rank step uses one workspace of
``chunk_rows · strip · (n − 1)`` elements (``strip`` = ``strip_rows(n − 1)``, about n / 16
candidates) and the euclidean distance step one of ``chunk_rows · n · d``. ``chunk_rows``
(LossOptions.chunk_rows) defaults to the most rows whose workspace fits the budget
``workspace_bytes(device)``: ``DEFAULT_WORKSPACE_BYTES[device.type]`` (8 MiB on CPU, where
a cache-sized tile is fastest; 512 MiB on CUDA, where large launches are), overridden by the
environment variable ``PC_KERNELS_TORCH_WORKSPACE_BYTES``. At least one row is always
processed, so the workspace never drops below one row's tile.
"""

from __future__ import annotations

import os

import torch

from .options import COSINE_NORM_EPS, ROW_STD_EPS, SPEARMAN_EPS, LossOptions
from .torch_soft_ranks import soft_ranks, strip_rows

DEFAULT_WORKSPACE_BYTES = {"cpu": 8 * 2**20, "cuda": 512 * 2**20}
_FALLBACK_WORKSPACE_BYTES = 128 * 2**20


def workspace_bytes(device: torch.device) -> int:
    """The chunk workspace budget (bytes) for tensors on ``device``."""
    override = os.environ.get("PC_KERNELS_TORCH_WORKSPACE_BYTES")
    if override is not None:
        if not override.isdigit() or int(override) < 1:
            raise ValueError(
                f"PC_KERNELS_TORCH_WORKSPACE_BYTES must be a positive integer (bytes); got {override!r}"
            )
        return int(override)
    return DEFAULT_WORKSPACE_BYTES.get(device.type, _FALLBACK_WORKSPACE_BYTES)


def chunk_rows(options: LossOptions, elements_per_row: int, x: torch.Tensor) -> int:
    """Rows per chunk: ``options.chunk_rows`` if set, else as many rows of
    ``elements_per_row`` elements of ``x.dtype`` as fit the workspace budget (at least 1)."""
    if options.chunk_rows is not None:
        return options.chunk_rows
    return max(1, workspace_bytes(x.device) // (elements_per_row * x.element_size()))


def _candidate_index(n: int, start: int, end: int, device: torch.device) -> torch.Tensor:
    """(m, n − 1) column indices j != i of reference rows i = start … end − 1."""
    columns = torch.arange(n - 1, device=device)
    rows = torch.arange(start, end, device=device)
    return columns[None, :] + (columns[None, :] >= rows[:, None]).long()


def _dissimilarity_rows(x: torch.Tensor, kind: str, start: int, end: int, rows_per_chunk: int) -> torch.Tensor:
    """(m, n) dissimilarities of rows start … end − 1 of x (n, d) to every row of x.

    Euclidean distances are taken from coordinate differences (no ‖a‖² + ‖b‖² − 2ab
    cancellation), so equal rows give exactly 0, with a zero gradient there.
    """
    if kind == "cosine":
        norms = x.norm(dim=1).clamp_min(COSINE_NORM_EPS)
        return 1.0 - (x[start:end] @ x.T) / (norms[start:end, None] * norms[None, :])
    distances = torch.cat(
        [
            torch.cdist(x[a : min(a + rows_per_chunk, end)], x, compute_mode="donot_use_mm_for_euclid_dist")
            for a in range(start, end, rows_per_chunk)
        ]
    )
    return distances.square() if kind == "sqeuclidean" else distances


def candidate_dissimilarities(x: torch.Tensor, options: LossOptions, start: int, end: int) -> torch.Tensor:
    """(m, n − 1) dissimilarities of reference rows start … end − 1 to their candidates j != i."""
    n, d = x.shape
    rows = _dissimilarity_rows(x, options.dissimilarity, start, end, chunk_rows(options, n * d, x))
    return rows.gather(1, _candidate_index(n, start, end, x.device))


def scale_rows(d: torch.Tensor, normalize: str) -> torch.Tensor:
    """D~ = D / (s + 1e-12) per row of (m, n − 1) candidates, s the population std ("row_std")."""
    if normalize == "none":
        return d
    var = d.var(dim=1, correction=0, keepdim=True)
    # sqrt has no derivative at 0 (a row of equal distances): give that row's scale a zero one.
    positive = var > 0
    std = torch.where(positive, torch.where(positive, var, torch.ones_like(var)).sqrt(), torch.zeros_like(var))
    return d / (std + ROW_STD_EPS)


def hard_ranks(scaled: torch.Tensor) -> torch.Tensor:
    """Exact average ranks (m, n − 1) of each row's candidates, ties ½, rescaled by 1/(n − 2).

    R_j = (#{k: D_k < D_j} + ½ #{k != j: D_k = D_j}) / (n − 2), by sorting: O(n² log n).
    """
    values = scaled.detach().contiguous()
    ordered = values.sort(dim=1).values
    below = torch.searchsorted(ordered, values, right=False)
    at_or_below = torch.searchsorted(ordered, values, right=True)
    return (below + at_or_below - 1).to(values.dtype) / (2.0 * (values.shape[1] - 1))


def _ranks(x: torch.Tensor, options: LossOptions, start: int, end: int, hard: bool) -> torch.Tensor:
    scaled = scale_rows(candidate_dissimilarities(x, options, start, end), options.normalize)
    if hard:
        return hard_ranks(scaled)
    w = scaled.shape[1]
    strip = strip_rows(w)
    return soft_ranks(scaled, options.tau, chunk_rows(options, strip * w, x), strip)


def _discrepancy(rs: torch.Tensor, rt: torch.Tensor, discrepancy: str) -> torch.Tensor:
    """ℓ (m,) from student and teacher ranks (m, n − 1): population moments over candidates."""
    if discrepancy == "mse":
        return (rs - rt).square().mean(dim=1)
    cs = rs - rs.mean(dim=1, keepdim=True)
    ct = rt - rt.mean(dim=1, keepdim=True)
    cov = (cs * ct).mean(dim=1)
    var_product = cs.square().mean(dim=1) * ct.square().mean(dim=1)
    return 1.0 - cov / torch.sqrt(var_product + SPEARMAN_EPS)


def _with_zero_diagonal(candidates: torch.Tensor) -> torch.Tensor:
    """(n, n − 1) candidate values → (n, n) matrix with a zero diagonal."""
    n = candidates.shape[0]
    full = candidates.new_zeros((n, n))
    return full.scatter(1, _candidate_index(n, 0, n, candidates.device), candidates)


def pairwise_dissimilarity(x: torch.Tensor, kind: str) -> torch.Tensor:
    """(n, d) features → (n, n) dissimilarities δ(x_i, x_j), zero on the diagonal."""
    n = x.shape[0]
    options = LossOptions(dissimilarity=kind)
    return _with_zero_diagonal(candidate_dissimilarities(x, options, 0, n))


def rank_matrix(x: torch.Tensor, options: LossOptions, hard: bool) -> torch.Tensor:
    """(n, d) features → (n, n) soft (or, if ``hard``, exact average) ranks with a zero diagonal."""
    return _with_zero_diagonal(_ranks(x, options, 0, x.shape[0], hard))


def row_losses(student: torch.Tensor, teacher: torch.Tensor, options: LossOptions) -> torch.Tensor:
    """Per-reference losses ℓ_i (end − start,) for the rows in ``options.row_range(n)``.

    student (n, p) and teacher (n, q) are 2-D tensors of one floating dtype on one device;
    only reference rows [start, end) are computed, each against all n samples.
    """
    start, end = options.row_range(student.shape[0])
    rs = _ranks(student, options, start, end, hard=False)
    rt = _ranks(teacher, options, start, end, hard=options.teacher_ranks == "hard")
    return _discrepancy(rs, rt, options.discrepancy)
