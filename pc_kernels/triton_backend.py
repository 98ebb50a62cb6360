"""The triton backend: Triton kernels behind ``torch.library`` custom ops with hand-written backwards.

Pipeline for reference rows [start, end) of an (n, p) student and (n, q) teacher:

    pc_kernels::dissimilarity     D^S, D^T rows (m, n)                        kernels/dissimilarity.py
    pc_kernels::rank_losses       row scales (torch), R^S and R^T in one pass,
                                  per-row moments → ℓ_i (m,)                  kernels/soft_rank.py
  backward:
    pc_kernels::rank_gradient     ∂L/∂D~ by the rank-gradient kernel, then the
                                  row-scale chain back to ∂L/∂D (torch, O(n²))
    pc_kernels::dissimilarity_backward   ∂L/∂D → ∂L/∂features

With ``algorithm="binned"`` the dissimilarity rows come from ``pc_kernels::dissimilarity`` and the rest
(row scale, binned soft ranks by FFT, discrepancy) is the torch backend's pipeline (``torch_backend.row_losses``):
FFTs have no Triton counterpart.

Each op has a fake (meta) implementation and the differentiable ones an autograd formula, so
``torch.compile(fullgraph=True)`` traces the loss without graph breaks. Saved for backward:
D^S, R^S, R^T (three (m, n) matrices; D^T too when the teacher needs a gradient), the (m, 6)
moments and the features; the backward adds one (m, n) gradient per side that requires it, and
the torch glue's (m, n)-sized temporaries are chunked below 2^24 elements. Inputs are float32 or
float64 and are computed in that dtype (every scalar that sets a kernel's precision is passed as
a tensor of that dtype); no input tensor is ever written to.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import torch_backend
from .kernels import MOMENTS, dissimilarity_backward, dissimilarity_forward, soft_rank_backward, soft_rank_forward
from .options import ROW_STD_EPS, SPEARMAN_EPS, LossOptions

# Largest temporary (elements) of the O(n²) torch glue, so that its peak memory stays at the saved matrices.
_TEMPORARY_ELEMENTS = 2**24


def _diagonal(m: int, row_start: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Indices of the (i − row_start, i) entries of an (m, n) block of rows."""
    rows = torch.arange(m, device=device)
    return rows, rows + row_start


def _row_std(d: Tensor, row_start: int) -> tuple[Tensor, Tensor]:
    """Mean and population standard deviation of each row of d over j != i: two (m,) tensors.

    Two-pass (no E[D²] − μ² cancellation), over chunks of rows so the temporary stays small.
    """
    m, n = d.shape
    mean = d.sum(dim=1) / (n - 1)
    squares = torch.empty_like(mean)
    chunk = max(1, _TEMPORARY_ELEMENTS // n)
    for first in range(0, m, chunk):
        deviation = d[first : first + chunk] - mean[first : first + chunk, None]
        deviation[_diagonal(deviation.shape[0], row_start + first, d.device)] = 0.0
        squares[first : first + chunk] = torch.linalg.vector_norm(deviation, dim=1)
    return mean, squares / math.sqrt(n - 1)


RowStatistics = tuple[Tensor, Tensor] | None


def _row_statistics(d: Tensor, row_start: int, normalize: str) -> RowStatistics:
    """(mean, population std) of each row over j != i with "row_std"; None with "none"."""
    return None if normalize == "none" else _row_std(d, row_start)


def _row_factors(d: Tensor, statistics: RowStatistics, tau: float) -> Tensor:
    """c_i = 1 / (τ (s_i + 1e-12)) with row statistics, 1/τ without: shape (m,)."""
    if statistics is None:
        return torch.full((d.shape[0],), 1.0 / tau, dtype=d.dtype, device=d.device)
    return 1.0 / (tau * (statistics[1] + ROW_STD_EPS))


def _unscale_gradient(grad: Tensor, d: Tensor, row_start: int, statistics: RowStatistics) -> Tensor:
    """∂L/∂D from grad = ∂L/∂D~ (overwritten, it is ours) for D~_ij = D_ij / (s_i + 1e-12).

    ∂L/∂D_ij = grad_ij / (s_i + ε) + (∂L/∂s_i) (D_ij − μ_i) / ((n − 1) s_i), j != i, with
    ∂L/∂s_i = −Σ_j grad_ij D_ij / (s_i + ε)² (and no s-term where s_i = 0).
    """
    if statistics is None:
        return grad
    n = d.shape[1]
    mean, std = statistics
    inverse = 1.0 / (std + ROW_STD_EPS)
    grad_std = -(grad.unsqueeze(1) @ d.unsqueeze(2)).view(-1) * inverse * inverse
    positive = std > 0
    coefficient = torch.where(positive, grad_std / ((n - 1) * torch.where(positive, std, 1.0)), 0.0)
    grad.mul_(inverse[:, None]).addcmul_(d, coefficient[:, None]).sub_((coefficient * mean)[:, None])
    grad[_diagonal(d.shape[0], row_start, d.device)] = 0.0
    return grad


def _spearman_moments(moments: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Population variances of R^S and R^T and their covariance per row, from the kernel's sums of
    u = R − ½ (exactly centred in exact arithmetic, so the raw-moment formulas lose nothing)."""
    count = n - 1
    mean_s, mean_t = moments[:, 1] / count, moments[:, 2] / count
    var_s = (moments[:, 3] / count - mean_s * mean_s).clamp_min(0.0)
    var_t = (moments[:, 4] / count - mean_t * mean_t).clamp_min(0.0)
    return var_s, var_t, moments[:, 5] / count - mean_s * mean_t


def _discrepancy(moments: Tensor, n: int, discrepancy: str) -> Tensor:
    """ℓ_i (m,) from the per-row moments: mean squared difference, or 1 − Spearman's ρ."""
    if discrepancy == "mse":
        return moments[:, 0] / (n - 1)
    var_s, var_t, cov = _spearman_moments(moments, n)
    return 1.0 - cov / torch.sqrt(var_s * var_t + SPEARMAN_EPS)


def _rank_slopes(
    moments: Tensor, grad_losses: Tensor, n: int, discrepancy: str
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Row coefficients (a, b) with ∂L/∂R^S_ij = a^S R^S_ij + b^S R^T_ij + const_i, and (a^T, b^T) likewise
    for ∂L/∂R^T = a^T R^T + b^T R^S + const (constants cancel in the rank gradient)."""
    count = n - 1
    if discrepancy == "mse":
        a = (2.0 / count) * grad_losses
        return (a, -a), (a, -a)
    var_s, var_t, cov = _spearman_moments(moments, n)
    denominator = torch.sqrt(var_s * var_t + SPEARMAN_EPS)
    b = -grad_losses / (count * denominator)
    common = grad_losses * cov / (count * denominator**3)
    return (common * var_t, b), (common * var_s, b)


@torch.library.custom_op("pc_kernels::dissimilarity", mutates_args=())
def _dissimilarity(x: Tensor, kind: str, start: int, end: int) -> Tensor:
    """(end − start, n) dissimilarities of rows [start, end) of x (n, p) against all rows."""
    return dissimilarity_forward(x, kind, start, end)


@_dissimilarity.register_fake
def _(x: Tensor, kind: str, start: int, end: int) -> Tensor:
    return x.new_empty((end - start, x.shape[0]))


@torch.library.custom_op("pc_kernels::dissimilarity_backward", mutates_args=())
def _dissimilarity_backward(grad: Tensor, x: Tensor, d: Tensor, kind: str, start: int) -> Tensor:
    """∂L/∂x (n, p) from ∂L/∂D and D (m, n) of rows [start, start + m)."""
    return dissimilarity_backward(grad.contiguous(), x, d, kind, start)


@_dissimilarity_backward.register_fake
def _(grad: Tensor, x: Tensor, d: Tensor, kind: str, start: int) -> Tensor:
    return x.new_empty(x.shape)


def _dissimilarity_setup(ctx, inputs, output) -> None:
    x, ctx.kind, ctx.start, _ = inputs
    ctx.save_for_backward(x, output)


def _dissimilarity_grad(ctx, grad: Tensor):
    x, d = ctx.saved_tensors
    return _dissimilarity_backward(grad, x, d, ctx.kind, ctx.start), None, None, None


_dissimilarity.register_autograd(_dissimilarity_grad, setup_context=_dissimilarity_setup)


@torch.library.custom_op("pc_kernels::rank_gradient", mutates_args=())
def _rank_gradient(
    d: Tensor, p: Tensor, q: Tensor, a: Tensor, b: Tensor, start: int, tau: float, normalize: str
) -> Tensor:
    """∂L/∂D (m, n) for ∂L/∂R_ij = a_i P_ij + b_i Q_ij + const_i, ranks R of dissimilarity rows d."""
    statistics = _row_statistics(d, start, normalize)
    c = _row_factors(d, statistics, tau)
    a, b = (a / tau).contiguous(), (b / tau).contiguous()
    grad = soft_rank_backward(d, c, p.contiguous(), q.contiguous(), a, b, start)
    return _unscale_gradient(grad, d, start, statistics)


@_rank_gradient.register_fake
def _(d: Tensor, p: Tensor, q: Tensor, a: Tensor, b: Tensor, start: int, tau: float, normalize: str) -> Tensor:
    return torch.empty_like(d)


@torch.library.custom_op("pc_kernels::ranks", mutates_args=())
def _ranks(d: Tensor, tau: float, normalize: str, hard: bool) -> Tensor:
    """(n, n) soft (or hard) ranks from the full (n, n) dissimilarity matrix d."""
    return soft_rank_forward(d, _row_factors(d, _row_statistics(d, 0, normalize), tau), 0, hard)[0]


@_ranks.register_fake
def _(d: Tensor, tau: float, normalize: str, hard: bool) -> Tensor:
    return torch.empty_like(d)


def _ranks_setup(ctx, inputs, output) -> None:
    d, ctx.tau, ctx.normalize, ctx.hard = inputs
    ctx.save_for_backward(d)


def _ranks_grad(ctx, grad: Tensor):
    if ctx.hard:
        return None, None, None, None
    (d,) = ctx.saved_tensors
    ones = torch.ones(d.shape[0], dtype=d.dtype, device=d.device)
    return _rank_gradient(d, grad, grad, ones, torch.zeros_like(ones), 0, ctx.tau, ctx.normalize), None, None, None


_ranks.register_autograd(_ranks_grad, setup_context=_ranks_setup)


@torch.library.custom_op("pc_kernels::rank_losses", mutates_args=())
def _rank_losses(
    ds: Tensor, dt: Tensor, start: int, tau: float, normalize: str, discrepancy: str, hard_teacher: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-row losses (m,) from student and teacher dissimilarity rows (m, n) of rows [start, start + m),
    with R^S, R^T (m, n) and the (m, MOMENTS) moments that the backward reuses."""
    cs = _row_factors(ds, _row_statistics(ds, start, normalize), tau)
    ct = cs if hard_teacher else _row_factors(dt, _row_statistics(dt, start, normalize), tau)
    rs, rt, moments = soft_rank_forward(ds, cs, start, False, dt, ct, hard_teacher)
    return _discrepancy(moments, ds.shape[1], discrepancy), rs, rt, moments


@_rank_losses.register_fake
def _(ds: Tensor, dt: Tensor, start: int, tau: float, normalize: str, discrepancy: str, hard_teacher: bool):
    m = ds.shape[0]
    return ds.new_empty((m,)), torch.empty_like(ds), torch.empty_like(ds), ds.new_empty((m, MOMENTS))


def _rank_losses_setup(ctx, inputs, output) -> None:
    ds, dt, ctx.start, ctx.tau, ctx.normalize, ctx.discrepancy, ctx.hard_teacher = inputs
    _, rs, rt, moments = output
    teacher_grad = dt.requires_grad and not ctx.hard_teacher
    ctx.save_for_backward(ds, dt if teacher_grad else None, rs, rt, moments)


def _rank_losses_grad(ctx, grad_losses: Tensor, *_unused: Tensor):
    ds, dt, rs, rt, moments = ctx.saved_tensors
    (a_s, b_s), (a_t, b_t) = _rank_slopes(moments, grad_losses, ds.shape[1], ctx.discrepancy)
    side = (ctx.start, ctx.tau, ctx.normalize)
    grad_s = _rank_gradient(ds, rs, rt, a_s, b_s, *side) if ctx.needs_input_grad[0] else None
    grad_t = None
    if ctx.needs_input_grad[1] and dt is not None:
        grad_t = _rank_gradient(dt, rt, rs, a_t, b_t, *side)
    return grad_s, grad_t, None, None, None, None, None


_rank_losses.register_autograd(_rank_losses_grad, setup_context=_rank_losses_setup)


def pairwise_dissimilarity(x: Tensor, kind: str) -> Tensor:
    """(n, d) features → (n, n) dissimilarities δ(x_i, x_j), zero on the diagonal."""
    return _dissimilarity(x, kind, 0, x.shape[0])


def _candidate_dissimilarities(x: Tensor, options: LossOptions, start: int, end: int) -> Tensor:
    """(end − start, n − 1) candidate dissimilarities by the Triton kernel, for the binned algorithm."""
    return torch_backend.gather_candidates(_dissimilarity(x, options.dissimilarity, start, end), start)


def rank_matrix(x: Tensor, options: LossOptions, hard: bool) -> Tensor:
    """(n, d) features → (n, n) soft (or hard, without gradient) ranks R with a zero diagonal."""
    if options.algorithm == "binned":
        return torch_backend.rank_matrix(x, options, hard, _candidate_dissimilarities)
    ranks = _ranks(pairwise_dissimilarity(x, options.dissimilarity), options.tau, options.normalize, hard)
    return ranks.detach() if hard else ranks


def row_losses(student: Tensor, teacher: Tensor, options: LossOptions) -> Tensor:
    """Per-reference losses ℓ_i for the rows in ``options.row_range(n)``, shape (end − start,).

    student (n, p) and teacher (n, q) are 2-D tensors of one dtype (float32 or float64) on one device.
    """
    if options.algorithm == "binned":
        return torch_backend.row_losses(student, teacher, options, _candidate_dissimilarities)
    start, end = options.row_range(student.shape[0])
    ds = _dissimilarity(student, options.dissimilarity, start, end)
    dt = _dissimilarity(teacher, options.dissimilarity, start, end)
    hard_teacher = options.teacher_ranks == "hard"
    return _rank_losses(ds, dt, start, options.tau, options.normalize, options.discrepancy, hard_teacher)[0]
