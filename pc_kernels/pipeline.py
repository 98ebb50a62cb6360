"""The pipeline every fast path runs: a dissimilarity stage and a rank stage over blocks of reference rows,
with the row scale, the discrepancy and all their backwards written once.

For each block of reference rows [a, b) and each side (student; teacher):

    prepared features ──dissimilarity stage──▶ d (c, n − 1) ──row scale──▶ factor c ──rank stage──▶ R
    (distances.py)       torch | triton                       (row_scale.py)          dense | triton | binned
                                                                                      | triton_binned
                                                                                      (hard_ranks.py for
                                                                                       hard teacher ranks)
    R^S, R^T ──discrepancy──▶ ℓ (c,)

and backward, block by block, in the reverse order: ∂ℓ → ∂R (discrepancy) → ∂y (rank stage) → ∂d (row
scale) → ∂features (the distance policy's matrix products). The forward keeps for the backward what
the plan allows within its memory budget: both sides' ranks (always for the dense algorithm), then the
student's dissimilarities; whatever it does not keep, the backward recomputes block by block. What is
O(n (p + q)), both sides' prepared features and the student's row statistics, is always kept.

Each entry point is a ``torch.library`` custom op with a fake implementation and a registered autograd
formula, so ``torch.compile(fullgraph=True)`` treats a whole loss (or rank or dissimilarity matrix) as
one node, on CPU as on CUDA. Their backwards are first-order only: differentiating a gradient again
raises an error naming double backward and the reference backend, which supports it.

Numerics (docs/spec.md, "Numerics"), kept here once for every path:
- any non-finite feature makes every loss value and every gradient NaN (the stages never see it);
- the upstream gradient is divided by a power of two that brings its largest magnitude into [½, 1)
  and the result multiplied back, so loss scaling by any factor never underflows or overflows a stage;
- prepared features and factors keep every intermediate in range (``distances.py``, ``row_scale.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor

from .options import LossOptions
from .plan import ExecutionPlan
from .stages import distances
from .stages.binned_ranks import binned_ranks, binned_ranks_backward
from .stages.dense_ranks import dense_ranks, dense_ranks_backward
from .stages.discrepancy import discrepancy, discrepancy_backward
from .stages.hard_ranks import hard_ranks
from .stages.layout import drop_diagonal, insert_diagonal
from .stages.row_scale import RowScale, row_scale, row_scale_backward, row_statistics

T = TypeVar("T")


def _stage(name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Run the decorated stage inside a profiler range ``pc_kernels.<name>`` (``python -m benchmarks
    stages`` reads each stage's share of a call from them)."""

    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def run(*args: object, **kwargs: object) -> T:
            with torch.profiler.record_function(f"pc_kernels.{name}"):
                return function(*args, **kwargs)

        return run

    return decorate


_prepare = _stage("prepare")(distances.prepare)
_discrepancy = _stage("discrepancy")(discrepancy)
_discrepancy_backward = _stage("discrepancy_backward")(discrepancy_backward)
_hard_ranks = _stage("hard_ranks")(hard_ranks)
_row_scale_backward = _stage("row_scale_backward")(row_scale_backward)
_accumulate_gradient = _stage("dissimilarity_backward")(distances.accumulate_gradient)


def _blocks(start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    """Blocks [a, b) of at most ``size`` reference rows covering [start, end)."""
    for a in range(start, end, size):
        yield a, min(a + size, end)


@_stage("dissimilarity")
def _distance_rows(stage: str, prepared: distances.PreparedFeatures, a: int, b: int, loops: str) -> Tensor:
    """The dissimilarity stage: candidate dissimilarities d (b − a, n − 1) of reference rows [a, b)."""
    if stage == "triton":
        from .stages.triton_distances import triton_candidate_rows

        return triton_candidate_rows(prepared, a, b)
    return distances.candidate_rows(prepared, a, b, loops)


class Stages(NamedTuple):
    """The stages and settings of one path (the plan's fields, as custom ops can carry them)."""

    tau: float
    dissimilarity: str
    normalize: str
    distance_stage: str
    rank_stage: str
    block_rows: int
    tile_rows: int
    bins: int | None
    fast_sigmoid: bool
    loops: str

    @property
    def grid_loops(self) -> str:
        """The binned stage's grid passes: Triton kernels for "triton_binned", else the CPU loops' choice."""
        return "triton" if self.rank_stage == "triton_binned" else self.loops

    def blocks(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """The pipeline's blocks [a, b) of reference rows [start, end)."""
        return _blocks(start, end, self.block_rows)

    @_stage("ranks")
    def ranks(self, d: Tensor, scale: RowScale) -> Tensor:
        """Soft ranks (c, w) of candidate rows d with their row scale."""
        if self.rank_stage in ("binned", "triton_binned"):
            return binned_ranks(d, scale.factor, self.bins, self.grid_loops, (scale.low, scale.high))
        if self.rank_stage == "triton":
            from .stages.triton_ranks import triton_ranks

            return triton_ranks(d, scale.factor, self.fast_sigmoid)
        return dense_ranks(d, scale.factor, self.tile_rows)

    @_stage("ranks_backward")
    def ranks_backward(self, d: Tensor, scale: RowScale, grad_ranks: Tensor) -> Tensor:
        """∂L/∂y (c, w), y = factor·d, from ∂L/∂R."""
        if self.rank_stage in ("binned", "triton_binned"):
            extremes = (scale.low, scale.high)
            return binned_ranks_backward(d, scale.factor, grad_ranks, self.bins, self.grid_loops, extremes)
        if self.rank_stage == "triton":
            from .stages.triton_ranks import triton_ranks_backward

            return triton_ranks_backward(d, scale.factor, grad_ranks, self.fast_sigmoid)
        return dense_ranks_backward(d, scale.factor, grad_ranks, self.tile_rows)

    def side(self, prepared: distances.PreparedFeatures, a: int, b: int) -> tuple[Tensor, RowScale]:
        """One side's candidate dissimilarities of rows [a, b) and their row scale."""
        return self.scaled(prepared, _distance_rows(self.distance_stage, prepared, a, b, self.loops))

    @_stage("row_scale")
    def scaled(
        self, prepared: distances.PreparedFeatures, d: Tensor, statistics: Tensor | None = None
    ) -> tuple[Tensor, RowScale]:
        """Candidate dissimilarities d of one side and their row scale (from the rows' kept ``statistics``
        when given)."""
        statistics = row_statistics(d, self.loops) if statistics is None else statistics
        return d, row_scale(statistics, self.tau, self.normalize, prepared.distance_exponent, d.dtype)

    def side_ranks(self, d: Tensor, scale: RowScale, hard: bool) -> Tensor:
        """Ranks of one side's rows: exact average ranks if ``hard``, else the rank stage's soft ranks."""
        return _hard_ranks(d) if hard else self.ranks(d, scale)

    def side_backward(
        self, prepared: distances.PreparedFeatures, a: int, d: Tensor, scale: RowScale, grad_ranks: Tensor, out: Tensor
    ) -> None:
        """Add one side's ∂L/∂(prepared features) of rows [a, a + c) to ``out`` (n, p) float64."""
        grad_y = self.ranks_backward(d, scale, grad_ranks)
        grad_d = _row_scale_backward(d, scale, grad_y, self.loops)
        _accumulate_gradient(prepared, a, d, grad_d, out, self.loops)


class _LossSettings(NamedTuple):
    """The loss ops' arguments after the features (each op's signature spells them out; the fakes read
    them by name from here)."""

    tau: float
    dissimilarity: str
    normalize: str
    distance_stage: str
    rank_stage: str
    block_rows: int
    tile_rows: int
    bins: int | None
    fast_sigmoid: bool
    loops: str
    discrepancy_kind: str
    hard_teacher: bool
    row_start: int
    row_end: int
    keep_ranks: bool
    keep_distances: bool


def _poison(*prepared: distances.PreparedFeatures) -> Tensor:
    """0, or NaN if any feature of any side was non-finite: a () float64 tensor."""
    finite = torch.stack([p.finite for p in prepared]).all()
    return torch.where(finite, 0.0, torch.nan).to(torch.float64)


def _power_of_two_scale(x: Tensor) -> tuple[Tensor, Tensor]:
    """(x·2^−e, e) with e the binary exponent of max |x|: an exact rescaling to a largest magnitude in [½, 1)."""
    exponent = torch.frexp(x.abs().amax().to(torch.float64))[1]
    return torch.ldexp(x.to(torch.float64), -exponent), exponent


def _features_gradient(out: Tensor | None, exponent: Tensor, like: Tensor, poison: Tensor) -> Tensor:
    """∂L/∂features from the accumulated ∂L/∂(prepared features) ``out``, scaled by 2^exponent."""
    if out is None:
        return like.new_empty(0)
    return torch.ldexp(out, exponent).add_(poison).to(like.dtype)


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on a gradient; differentiating through it raises: the fast paths' backwards are first order."""

    @staticmethod
    def forward(ctx, path: str, grad: Tensor, *anchors: Tensor) -> Tensor:
        ctx.path = path
        return grad.clone()

    @staticmethod
    def backward(ctx, *grads: Tensor) -> None:
        raise RuntimeError(
            f"double backward (differentiating a gradient of the perception coherence loss, e.g. after "
            f"create_graph=True) is not supported by the {ctx.path} path, whose backward is hand-written; "
            "use backend='reference', whose plain autograd formulas support it"
        )


def _first_order_only(grad: Tensor | None, path: str, anchors: tuple[Tensor, ...]) -> Tensor | None:
    if grad is None or not torch.is_grad_enabled():
        return grad
    return _FirstOrderOnly.apply(path, grad, *anchors)


def _path_name(settings: Stages | _LossSettings) -> str:
    return f"'{settings.distance_stage}' dissimilarity + '{settings.rank_stage}' rank stage"


# ---------------------------------------------------------------------------------------------- loss


@torch.library.custom_op("pc_kernels::coherence_loss", mutates_args=())
def coherence_loss(
    student: Tensor,
    teacher: Tensor,
    tau: float,
    dissimilarity: str,
    normalize: str,
    distance_stage: str,
    rank_stage: str,
    block_rows: int,
    tile_rows: int,
    bins: int | None,
    fast_sigmoid: bool,
    loops: str,
    discrepancy_kind: str,
    hard_teacher: bool,
    row_start: int,
    row_end: int,
    keep_ranks: bool,
    keep_distances: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per-reference losses ℓ (row_end − row_start,) of student (n, p) and teacher (n, q) features, then
    what the backward reuses: both sides' ranks if ``keep_ranks`` and the student's dissimilarities if
    ``keep_distances``, (m, n − 1) each ((0, n − 1) placeholders otherwise), and, always, everything of
    size O(n (p + q)): the student's row statistics (m, 4) and both sides' prepared features
    (``distances.pack``)."""
    stages = Stages(
        tau, dissimilarity, normalize, distance_stage, rank_stage, block_rows, tile_rows, bins, fast_sigmoid, loops
    )
    ps, pt = _prepare(student, dissimilarity), _prepare(teacher, dissimilarity)
    m, w = row_end - row_start, student.shape[0] - 1
    losses = student.new_empty(m)
    ranks_s, ranks_t = (student.new_empty((m if keep_ranks else 0, w)) for _ in range(2))
    distances_s = student.new_empty((m if keep_distances else 0, w))
    statistics_s = torch.empty((m, 4), dtype=torch.float64, device=student.device)
    for a, b in stages.blocks(row_start, row_end):
        ds, scale_s = stages.side(ps, a, b)
        dt, scale_t = stages.side(pt, a, b)
        rs = stages.side_ranks(ds, scale_s, False)
        rt = stages.side_ranks(dt, scale_t, hard_teacher)
        rows = slice(a - row_start, b - row_start)
        losses[rows] = _discrepancy(rs, rt, discrepancy_kind)
        statistics_s[rows] = scale_s.statistics
        if keep_ranks:
            ranks_s[rows], ranks_t[rows] = rs, rt
        if keep_distances:
            distances_s[rows] = ds
    kept = (ranks_s, ranks_t, distances_s, statistics_s, distances.pack(ps), distances.pack(pt))
    return losses.add_(_poison(ps, pt)), *kept


@coherence_loss.register_fake
def _(student: Tensor, teacher: Tensor, *arguments: Any) -> tuple[Tensor, ...]:
    settings = _LossSettings(*arguments)
    (n, p), q = student.shape, teacher.shape[1]
    m, w = settings.row_end - settings.row_start, n - 1
    ranks = student.new_empty((m if settings.keep_ranks else 0, w))
    distance_rows = student.new_empty((m if settings.keep_distances else 0, w))
    statistics = student.new_empty((m, 4), dtype=torch.float64)
    prepared = student.new_empty((n, p + 3), dtype=torch.float64), teacher.new_empty((n, q + 3), dtype=torch.float64)
    return student.new_empty(m), ranks, torch.empty_like(ranks), distance_rows, statistics, *prepared


@torch.library.custom_op("pc_kernels::coherence_loss_backward", mutates_args=())
def coherence_loss_backward(
    grad_losses: Tensor,
    student: Tensor,
    teacher: Tensor,
    ranks_s: Tensor,
    ranks_t: Tensor,
    distances_s: Tensor,
    statistics_s: Tensor,
    prepared_s: Tensor,
    prepared_t: Tensor,
    tau: float,
    dissimilarity: str,
    normalize: str,
    distance_stage: str,
    rank_stage: str,
    block_rows: int,
    tile_rows: int,
    bins: int | None,
    fast_sigmoid: bool,
    loops: str,
    discrepancy_kind: str,
    hard_teacher: bool,
    row_start: int,
    row_end: int,
    keep_ranks: bool,
    keep_distances: bool,
    student_grad: bool,
    teacher_grad: bool,
) -> tuple[Tensor, Tensor]:
    """(∂L/∂student, ∂L/∂teacher) for ∂L/∂ℓ = grad_losses; an empty tensor for a side not asked for."""
    stages = Stages(
        tau, dissimilarity, normalize, distance_stage, rank_stage, block_rows, tile_rows, bins, fast_sigmoid, loops
    )
    ps = distances.unpack(prepared_s, dissimilarity, student.dtype)
    pt = distances.unpack(prepared_t, dissimilarity, teacher.dtype)
    teacher_grad = teacher_grad and not hard_teacher
    g, exponent = _power_of_two_scale(grad_losses)
    g = g.to(student.dtype)
    out_s = torch.zeros(ps.features.shape, dtype=torch.float64, device=student.device) if student_grad else None
    out_t = torch.zeros(pt.features.shape, dtype=torch.float64, device=teacher.device) if teacher_grad else None
    for a, b in stages.blocks(row_start, row_end):
        rows = slice(a - row_start, b - row_start)
        ds = distances_s[rows] if keep_distances else _distance_rows(distance_stage, ps, a, b, loops)
        ds, scale_s = stages.scaled(ps, ds, statistics_s[rows])
        # The teacher's dissimilarities are needed for its own gradient, or to recompute its ranks.
        teacher_rows = stages.side(pt, a, b) if out_t is not None or not keep_ranks else None
        if keep_ranks:
            rs, rt = ranks_s[rows], ranks_t[rows]
        else:
            assert teacher_rows is not None
            rs, rt = stages.side_ranks(ds, scale_s, False), stages.side_ranks(*teacher_rows, hard_teacher)
        grad_rs, grad_rt = _discrepancy_backward(rs, rt, g[rows], discrepancy_kind)
        if out_s is not None:
            stages.side_backward(ps, a, ds, scale_s, grad_rs, out_s)
        if out_t is not None and teacher_rows is not None:
            stages.side_backward(pt, a, *teacher_rows, grad_rt, out_t)
    poison = _poison(ps, pt)
    return (
        _features_gradient(out_s, exponent - ps.exponent, student, poison),
        _features_gradient(out_t, exponent - pt.exponent, teacher, poison),
    )


@coherence_loss_backward.register_fake
def _(grad_losses: Tensor, student: Tensor, teacher: Tensor, *arguments: Any) -> tuple[Tensor, Tensor]:
    settings = _LossSettings(*arguments[6:-2])
    student_grad, teacher_grad = arguments[-2:]
    s = torch.empty_like(student) if student_grad else student.new_empty(0)
    t = torch.empty_like(teacher) if teacher_grad and not settings.hard_teacher else teacher.new_empty(0)
    return s, t


def _coherence_loss_setup(ctx, inputs: tuple, output: tuple) -> None:
    student, teacher, *ctx.settings = inputs
    ctx.save_for_backward(student, teacher, *output[1:])
    # What the forward keeps for the backward is not differentiable: no zero gradients are made for it.
    ctx.mark_non_differentiable(*output[1:])
    ctx.set_materialize_grads(False)


def _coherence_loss_grad(ctx, grad_losses: Tensor | None, *_: Tensor) -> tuple:
    if grad_losses is None:  # grads are not materialized: no gradient reached the losses
        return (None,) * (2 + len(ctx.settings))
    student, teacher, *kept = ctx.saved_tensors
    need_s, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_s, grad_t = coherence_loss_backward(grad_losses, student, teacher, *kept, *ctx.settings, need_s, need_t)
    path = _path_name(_LossSettings(*ctx.settings))
    anchors = (grad_losses, student, teacher)
    grad_s = _first_order_only(grad_s if need_s else None, path, anchors)
    grad_t = _first_order_only(grad_t if need_t and grad_t.numel() else None, path, anchors)
    return (grad_s, grad_t) + (None,) * len(ctx.settings)


coherence_loss.register_autograd(_coherence_loss_grad, setup_context=_coherence_loss_setup)


def _stage_arguments(options: LossOptions, plan: ExecutionPlan, dissimilarity: str) -> tuple:
    return (
        options.tau,
        dissimilarity,
        options.normalize,
        plan.distance_stage,
        plan.rank_stage,
        plan.block_rows,
        plan.tile_rows,
        plan.bins,
        plan.fast_sigmoid,
        plan.loops,
    )


def row_losses(student: Tensor, teacher: Tensor, options: LossOptions, plan: ExecutionPlan) -> Tensor:
    """Per-reference losses ℓ_i (end − start,) for the plan's rows, from student (n, p) and teacher (n, q)
    features of one computation dtype on one device (teacher detached for hard teacher ranks)."""
    start, end = plan.rows
    losses, *_ = coherence_loss(
        student,
        teacher,
        *_stage_arguments(options, plan, options.dissimilarity),
        options.discrepancy,
        options.teacher_ranks == "hard",
        start,
        end,
        plan.keep_ranks,
        plan.keep_distances,
    )
    return losses


# ---------------------------------------------------------------------------------------- rank matrix


@torch.library.custom_op("pc_kernels::rank_matrix", mutates_args=())
def _rank_matrix(
    x: Tensor,
    tau: float,
    dissimilarity: str,
    normalize: str,
    distance_stage: str,
    rank_stage: str,
    block_rows: int,
    tile_rows: int,
    bins: int | None,
    fast_sigmoid: bool,
    loops: str,
    hard: bool,
) -> Tensor:
    """(n, n) ranks of features x (n, d), zero on the diagonal."""
    stages = Stages(
        tau, dissimilarity, normalize, distance_stage, rank_stage, block_rows, tile_rows, bins, fast_sigmoid, loops
    )
    prepared = _prepare(x, dissimilarity)
    n = x.shape[0]
    out = x.new_empty((n, n))
    for a, b in stages.blocks(0, n):
        d, scale = stages.side(prepared, a, b)
        out[a:b] = insert_diagonal(stages.side_ranks(d, scale, hard), a)
    return out.add_(_poison(prepared))


@_rank_matrix.register_fake
def _(x: Tensor, *arguments: Any) -> Tensor:
    return x.new_empty((x.shape[0], x.shape[0]))


@torch.library.custom_op("pc_kernels::rank_matrix_backward", mutates_args=())
def _rank_matrix_backward(
    grad: Tensor,
    x: Tensor,
    tau: float,
    dissimilarity: str,
    normalize: str,
    distance_stage: str,
    rank_stage: str,
    block_rows: int,
    tile_rows: int,
    bins: int | None,
    fast_sigmoid: bool,
    loops: str,
) -> Tensor:
    """∂L/∂x (n, d) for ∂L/∂R = grad (n, n) of the soft ranks."""
    stages = Stages(
        tau, dissimilarity, normalize, distance_stage, rank_stage, block_rows, tile_rows, bins, fast_sigmoid, loops
    )
    prepared = _prepare(x, dissimilarity)
    g, exponent = _power_of_two_scale(grad)
    g = g.to(x.dtype)
    out = torch.zeros(prepared.features.shape, dtype=torch.float64, device=x.device)
    for a, b in stages.blocks(0, x.shape[0]):
        d, scale = stages.side(prepared, a, b)
        stages.side_backward(prepared, a, d, scale, drop_diagonal(g[a:b], a), out)
    return _features_gradient(out, exponent - prepared.exponent, x, _poison(prepared))


@_rank_matrix_backward.register_fake
def _(grad: Tensor, x: Tensor, *arguments: Any) -> Tensor:
    return torch.empty_like(x)


def _rank_matrix_setup(ctx, inputs: tuple, output: Tensor) -> None:
    x, *ctx.settings, ctx.hard = inputs
    ctx.save_for_backward(x)


def _rank_matrix_grad(ctx, grad: Tensor) -> tuple:
    (x,) = ctx.saved_tensors
    if ctx.hard:
        return (None,) * (len(ctx.settings) + 2)
    grad_x = _rank_matrix_backward(grad, x, *ctx.settings)
    path = _path_name(Stages(*ctx.settings))
    return (_first_order_only(grad_x, path, (grad, x)),) + (None,) * (len(ctx.settings) + 1)


_rank_matrix.register_autograd(_rank_matrix_grad, setup_context=_rank_matrix_setup)


def rank_matrix(x: Tensor, options: LossOptions, plan: ExecutionPlan, hard: bool) -> Tensor:
    """(n, n) soft (or, if ``hard``, exact average, without gradient) ranks of features x (n, d)."""
    ranks = _rank_matrix(x, *_stage_arguments(options, plan, options.dissimilarity), hard)
    return ranks.detach() if hard else ranks


# ------------------------------------------------------------------------------- dissimilarity matrix


@torch.library.custom_op("pc_kernels::dissimilarity_matrix", mutates_args=())
def _dissimilarity_matrix(x: Tensor, kind: str, distance_stage: str, block_rows: int, loops: str) -> Tensor:
    """(n, n) dissimilarities δ(x_i, x_j) of features x (n, d), zero on the diagonal; NaN in the rows and
    columns of samples with a non-finite feature."""
    prepared = _prepare(x, kind)
    n = x.shape[0]
    out = x.new_empty((n, n))
    for a, b in _blocks(0, n, block_rows):
        d = torch.ldexp(
            _distance_rows(distance_stage, prepared, a, b, loops).to(torch.float64), prepared.distance_exponent
        )
        out[a:b] = insert_diagonal(d.to(x.dtype), a)
    bad = ~torch.isfinite(x).all(dim=1)
    return out.masked_fill_(bad[:, None] | bad[None, :], torch.nan)


@_dissimilarity_matrix.register_fake
def _(x: Tensor, kind: str, distance_stage: str, block_rows: int, loops: str) -> Tensor:
    return x.new_empty((x.shape[0], x.shape[0]))


@torch.library.custom_op("pc_kernels::dissimilarity_matrix_backward", mutates_args=())
def _dissimilarity_matrix_backward(
    grad: Tensor, x: Tensor, kind: str, distance_stage: str, block_rows: int, loops: str
) -> Tensor:
    """∂L/∂x (n, d) for ∂L/∂D = grad (n, n)."""
    prepared = _prepare(x, kind)
    g, exponent = _power_of_two_scale(grad)
    g = g.to(x.dtype)
    out = torch.zeros(prepared.features.shape, dtype=torch.float64, device=x.device)
    for a, b in _blocks(0, x.shape[0], block_rows):
        d = _distance_rows(distance_stage, prepared, a, b, loops)
        _accumulate_gradient(prepared, a, d, drop_diagonal(g[a:b], a), out, loops)
    exponent = exponent + prepared.distance_exponent - prepared.exponent
    return _features_gradient(out, exponent, x, _poison(prepared))


@_dissimilarity_matrix_backward.register_fake
def _(grad: Tensor, x: Tensor, kind: str, distance_stage: str, block_rows: int, loops: str) -> Tensor:
    return torch.empty_like(x)


def _dissimilarity_matrix_setup(ctx, inputs: tuple, output: Tensor) -> None:
    x, *ctx.settings = inputs
    ctx.save_for_backward(x)


def _dissimilarity_matrix_grad(ctx, grad: Tensor) -> tuple:
    (x,) = ctx.saved_tensors
    grad_x = _dissimilarity_matrix_backward(grad, x, *ctx.settings)
    return (_first_order_only(grad_x, f"'{ctx.settings[1]}' dissimilarity stage", (grad, x)), None, None, None, None)


_dissimilarity_matrix.register_autograd(_dissimilarity_matrix_grad, setup_context=_dissimilarity_matrix_setup)


def dissimilarity_matrix(x: Tensor, kind: str, plan: ExecutionPlan) -> Tensor:
    """(n, n) dissimilarities of features x (n, d) by the plan's dissimilarity stage."""
    return _dissimilarity_matrix(x, kind, plan.distance_stage, plan.block_rows, plan.loops)
