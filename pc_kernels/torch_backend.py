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

``algorithm="binned"`` replaces the O(n³) rank step by ``binned_soft_ranks.py`` (O(n² + n·B log B))
and processes the reference rows in blocks of ``binned_block_rows`` (``chunk_rows`` if set, else
what fits ``BINNED_BLOCK_BYTES``: 32 MiB on CPU, where blocks that stay in cache are fastest;
2 GiB on CUDA), each block as one chunk. When all blocks together would keep more than
``BINNED_MEMORY_BYTES`` (4 GiB on CPU, 24 GiB on CUDA, estimated at 16 (rows, n) tensors per
block row) for the backward, every block is checkpointed instead: it is recomputed during the
backward, and memory holds one block's tensors at a time. The triton backend reuses this
pipeline with its own dissimilarity kernel (``row_losses``'s ``candidates`` argument).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

import torch
from torch.utils.checkpoint import checkpoint

from .binned_soft_ranks import binned_soft_ranks
from .gram_distances import gram_distance_rows
from .options import COSINE_NORM_EPS, ROW_STD_EPS, SPEARMAN_EPS, LossOptions
from .torch_soft_ranks import soft_ranks, strip_rows

DEFAULT_WORKSPACE_BYTES = {"cpu": 8 * 2**20, "cuda": 512 * 2**20}
_FALLBACK_WORKSPACE_BYTES = 128 * 2**20
# algorithm="binned": memory for one block of reference rows (all its (rows, n)-sized tensors): small
# blocks keep the O(n²) steps in cache on CPU.
BINNED_BLOCK_BYTES = {"cpu": 32 * 2**20, "cuda": 2 * 2**30}
# algorithm="binned": above this estimate for all blocks together, blocks are checkpointed.
BINNED_MEMORY_BYTES = {"cpu": 4 * 2**30, "cuda": 24 * 2**30}
# (rows, n)-sized tensors a block of the binned algorithm keeps alive, both sides, forward and backward.
_BINNED_TENSORS_PER_ROW = 16

# A backend's candidate dissimilarities: (x (n, d), options, start, end) → (end − start, n − 1), differentiable.
CandidateDissimilarities = Callable[[torch.Tensor, LossOptions, int, int], torch.Tensor]


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


def _dissimilarity_rows(x: torch.Tensor, kind: str, start: int, end: int, gram: bool) -> torch.Tensor:
    """(m, n) dissimilarities of rows start … end − 1 of x (n, d) to every row of x.

    Euclidean distances are taken from coordinate differences (no ‖a‖² + ‖b‖² − 2ab
    cancellation), so equal rows give exactly 0, with a zero gradient there; with ``gram``, from
    the float64 Gram form instead (``gram_distances.py``: for float32 x, as accurate as its inputs).
    """
    if kind == "cosine":
        norms = x.norm(dim=1).clamp_min(COSINE_NORM_EPS)
        return 1.0 - (x[start:end] @ x.T) / (norms[start:end, None] * norms[None, :])
    if gram:
        return gram_distance_rows(x[start:end], x, kind == "sqeuclidean")
    distances = torch.cdist(x[start:end], x, compute_mode="donot_use_mm_for_euclid_dist")
    return distances.square() if kind == "sqeuclidean" else distances


def candidate_dissimilarities(x: torch.Tensor, options: LossOptions, start: int, end: int) -> torch.Tensor:
    """(m, n − 1) dissimilarities of reference rows start … end − 1 to their candidates j != i,
    computed in chunks of rows whose (rows, n, d) work fits the workspace. The binned algorithm
    takes float32 euclidean distances from the float64 Gram form (``gram_distances.py``)."""
    n = x.shape[0]
    step = chunk_rows(options, n * x.shape[1], x)
    gram = options.algorithm == "binned" and x.dtype == torch.float32
    return torch.cat(
        [
            _dissimilarity_rows(x, options.dissimilarity, a, min(a + step, end), gram).gather(
                1, _candidate_index(n, a, min(a + step, end), x.device)
            )
            for a in range(start, end, step)
        ]
    )


def gather_candidates(rows: torch.Tensor, start: int) -> torch.Tensor:
    """(m, n) dissimilarity rows of references start … start + m − 1 → their (m, n − 1) candidates."""
    m, n = rows.shape
    return rows.gather(1, _candidate_index(n, start, start + m, rows.device))


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


def _ranks(
    x: torch.Tensor, options: LossOptions, start: int, end: int, hard: bool, candidates: CandidateDissimilarities
) -> torch.Tensor:
    scaled = scale_rows(candidates(x, options, start, end), options.normalize)
    if hard:
        return hard_ranks(scaled)
    if options.algorithm == "binned":
        return binned_soft_ranks(scaled, options.tau, options.bins)
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


def rank_matrix(
    x: torch.Tensor, options: LossOptions, hard: bool, candidates: CandidateDissimilarities = candidate_dissimilarities
) -> torch.Tensor:
    """(n, d) features → (n, n) soft (or, if ``hard``, exact average) ranks with a zero diagonal."""
    n = x.shape[0]
    if options.algorithm == "dense":
        return _with_zero_diagonal(_ranks(x, options, 0, n, hard, candidates))
    step = binned_block_rows(options, x)
    block = replace(options, chunk_rows=step)
    ranks = [_ranks(x, block, a, min(a + step, n), hard, candidates) for a in range(0, n, step)]
    return _with_zero_diagonal(torch.cat(ranks))


def _block_losses(
    student: torch.Tensor, teacher: torch.Tensor, options: LossOptions, start: int, end: int, candidates: CandidateDissimilarities
) -> torch.Tensor:
    rs = _ranks(student, options, start, end, False, candidates)
    rt = _ranks(teacher, options, start, end, options.teacher_ranks == "hard", candidates)
    return _discrepancy(rs, rt, options.discrepancy)


def _binned_bytes_per_row(x: torch.Tensor) -> int:
    return _BINNED_TENSORS_PER_ROW * x.shape[0] * x.element_size()


def binned_block_rows(options: LossOptions, x: torch.Tensor) -> int:
    """Reference rows per block of the binned algorithm: ``options.chunk_rows`` if set, else as many
    as fit ``BINNED_BLOCK_BYTES`` for x's device (at least 1)."""
    if options.chunk_rows is not None:
        return options.chunk_rows
    return max(1, BINNED_BLOCK_BYTES.get(x.device.type, _FALLBACK_WORKSPACE_BYTES) // _binned_bytes_per_row(x))


def _binned_needs_checkpoints(x: torch.Tensor, rows: int) -> bool:
    """Whether ``rows`` reference rows of the binned algorithm exceed ``BINNED_MEMORY_BYTES`` together."""
    budget = BINNED_MEMORY_BYTES.get(x.device.type, _FALLBACK_WORKSPACE_BYTES)
    return rows * _binned_bytes_per_row(x) > budget


def row_losses(
    student: torch.Tensor, teacher: torch.Tensor, options: LossOptions, candidates: CandidateDissimilarities = candidate_dissimilarities
) -> torch.Tensor:
    """Per-reference losses ℓ_i (end − start,) for the rows in ``options.row_range(n)``.

    student (n, p) and teacher (n, q) are 2-D tensors of one floating dtype on one device;
    only reference rows [start, end) are computed, each against all n samples, from the
    candidate dissimilarities that ``candidates`` gives (this backend's own by default).

    With ``algorithm="binned"`` nothing is O(n³) and the rows are processed in blocks of
    ``binned_block_rows``, each as one chunk. When a gradient is recorded and all blocks together would keep more
    than ``BINNED_MEMORY_BYTES`` (estimated), each block is checkpointed: its forward is
    recomputed during backward, so memory holds one block's (rows, n) tensors at a time.
    """
    start, end = options.row_range(student.shape[0])
    if options.algorithm == "dense":
        return _block_losses(student, teacher, options, start, end, candidates)
    step = binned_block_rows(options, student)
    block = replace(options, chunk_rows=step)
    blocks = [(a, min(a + step, end)) for a in range(start, end, step)]
    if len(blocks) == 1 or not torch.is_grad_enabled() or not _binned_needs_checkpoints(student, end - start):
        return torch.cat([_block_losses(student, teacher, block, a, b, candidates) for a, b in blocks])
    return torch.cat(
        [checkpoint(_block_losses, student, teacher, block, a, b, candidates, use_reentrant=False) for a, b in blocks]
    )
