"""The pipeline every fast path runs: the stages of a call (``stages/registry.py``) over blocks of reference
rows, forward and backward, written once for every path.

For each block of reference rows [a, b) and each side (student; teacher), with the stage interfaces of
``stages/interfaces.py``:

    prepared features ──DissimilarityStage──▶ d (c, n − 1) ──RowScaleStage──▶ factor c ──RankStage──▶ R
    (distances.prepare)                                                              (hard_ranks.py for
                                                                                      hard teacher ranks)
    R^S, R^T ──Discrepancy──▶ ℓ (c,)

and backward, block by block, in the reverse order: ∂ℓ → ∂R (discrepancy) → ∂y (rank stage) → ∂d (row
scale) → ∂features (the dissimilarity policy's matrix products). The forward keeps for the backward what
the plan allows within its memory budget: both sides' ranks (always for the dense algorithm), then the
student's dissimilarities; whatever it does not keep, the backward recomputes block by block. What is
O(n (p + q)), both sides' prepared features and the student's row statistics, is always kept.

Each entry point is a ``torch.library`` operator (``_op``) with a fake implementation and a registered
autograd formula, taking the call's settings (options and plan) as one record (``settings.py``), so
``torch.compile(fullgraph=True)`` treats a whole loss (or rank or dissimilarity matrix) as one node, on
CPU as on CUDA. Their backwards are first-order only: differentiating a gradient again
raises an error naming double backward and the reference backend, which supports it.

Numerics (docs/spec.md, "Numerics"), kept here once for every path:
- any non-finite feature makes every loss value and every gradient NaN (the stages never see it);
- the upstream gradient is divided by a power of two that brings its largest magnitude into [½, 1)
  and the result multiplied back, so loss scaling by any factor never underflows or overflows a stage;
- prepared features and factors keep every intermediate in range (``distances.py``, ``row_scale.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

from .options import LossOptions
from .plan import ExecutionPlan
from .settings import Settings
from .stages import distances, registry
from .stages.hard_ranks import hard_ranks
from .stages.layout import drop_diagonal, insert_diagonal
from .stages.row_scale import RowScale

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
_hard_ranks = _stage("hard_ranks")(hard_ranks)


class _Op:
    """The operator ``pc_kernels::<name>`` of ``schema``, with ``kernel`` as its implementation on every device;
    calling it dispatches to the operator.

    Defined with ``torch.library.define`` and ``torch.library.impl`` rather than ``torch.library.custom_op``,
    which wraps every kernel in ``torch._disable_dynamo``: that wrapper imports ``torch._dynamo`` (about a
    second) on the first eager call. Under ``torch.compile`` the operator is one node of the graph either way:
    dynamo does not trace into a kernel, it calls the fake implementation.
    """

    def __init__(self, name: str, schema: str, kernel: Callable[..., Any]) -> None:
        self.qualname = f"pc_kernels::{name}"
        torch.library.define(self.qualname, schema, lib=_LIBRARY)
        torch.library.impl(self.qualname, "CompositeExplicitAutograd", _untracked(kernel), lib=_LIBRARY)
        self._overload = getattr(torch.ops.pc_kernels, name).default

    def __call__(self, *args: Any) -> Any:
        return self._overload(*args)

    def register_fake(self, fake: Callable[..., Any]) -> Callable[..., Any]:
        torch.library.register_fake(self.qualname, fake, lib=_LIBRARY)
        return fake

    def register_autograd(self, backward: Callable[..., Any], *, setup_context: Callable[..., Any]) -> None:
        torch.library.register_autograd(self.qualname, backward, setup_context=setup_context, lib=_LIBRARY)


_LIBRARY = torch.library.Library("pc_kernels", "FRAGMENT")


def _untracked(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """``kernel`` run without autograd recording. An operator's autograd is its registered formula (or none,
    for the backwards): a backward called with ``create_graph=True`` gets inputs that require grad, and its
    operations must not be differentiated (nor refuse, as ``out=`` products do); double backward goes
    through ``_first_order_only``'s clear error instead."""

    @functools.wraps(kernel)
    def run(*args: Any) -> Any:
        with torch.no_grad():
            return kernel(*args)

    return run


def _op(name: str, schema: str) -> Callable[[Callable[..., Any]], _Op]:
    """Decorator: the function as the kernel of the operator ``pc_kernels::<name>`` of ``schema`` (``_Op``)."""
    return lambda kernel: _Op(name, schema, kernel)


class _Path:
    """The stages of one call (``registry.build``) run block by block: what the ops below share."""

    def __init__(self, settings: Settings):
        self.stages = registry.build(settings)
        self.block_rows = settings.plan.block_rows

    def blocks(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """Blocks [a, b) covering [start, end) made of whole tiles of the distance stage
        (``distances.gram_tiles``), so that no result depends on the blocks: ``block_rows`` rounded up to a
        multiple of ``distances.GRAM_ROWS`` reference rows, each block ending on such a multiple (or at
        ``end``)."""
        tiles = -(-self.block_rows // distances.GRAM_ROWS)
        a = start
        while a < end:
            b = min(end, (a // distances.GRAM_ROWS + tiles) * distances.GRAM_ROWS)
            yield a, b
            a = b

    @_stage("dissimilarity")
    def dissimilarities(self, prepared: distances.PreparedFeatures, a: int, b: int) -> Tensor:
        """Candidate dissimilarities d (b − a, n − 1) of reference rows [a, b)."""
        return self.stages.dissimilarity.rows(prepared, a, b)

    @_stage("dissimilarity_backward")
    def dissimilarity_backward(
        self, prepared: distances.PreparedFeatures, a: int, d: Tensor, grad_d: Tensor, out: Tensor
    ) -> None:
        """Add ∂L/∂(prepared features) of candidate rows d of reference rows [a, a + c) to ``out``."""
        self.stages.dissimilarity.accumulate_gradient(prepared, a, d, grad_d, out)

    @_stage("row_scale")
    def scaled(
        self, prepared: distances.PreparedFeatures, d: Tensor, statistics: Tensor | None = None
    ) -> tuple[Tensor, RowScale]:
        """Candidate dissimilarities d of one side and their row scale (from the rows' kept ``statistics``
        when given)."""
        row_scale = self.stages.row_scale
        statistics = row_scale.statistics(d) if statistics is None else statistics
        return d, row_scale.scale(statistics, prepared.unit_exponent, d.dtype)

    def side(self, prepared: distances.PreparedFeatures, a: int, b: int) -> tuple[Tensor, RowScale]:
        """One side's candidate dissimilarities of rows [a, b) and their row scale."""
        return self.scaled(prepared, self.dissimilarities(prepared, a, b))

    @_stage("ranks")
    def _soft_ranks(self, d: Tensor, scale: RowScale) -> Tensor:
        return self.stages.ranks.ranks(d, scale)

    def side_ranks(self, d: Tensor, scale: RowScale, hard: bool) -> Tensor:
        """Ranks of one side's rows: exact average ranks if ``hard``, else the rank stage's soft ranks."""
        return _hard_ranks(d) if hard else self._soft_ranks(d, scale)

    @_stage("discrepancy")
    def losses(self, rs: Tensor, rt: Tensor) -> Tensor:
        """ℓ (c,) of student and teacher ranks (c, w)."""
        return self.stages.discrepancy.losses(rs, rt)

    @_stage("discrepancy_backward")
    def losses_backward(self, rs: Tensor, rt: Tensor, grad_losses: Tensor) -> tuple[Tensor, Tensor]:
        """(∂L/∂R^S, ∂L/∂R^T) for ∂L/∂ℓ = grad_losses (c,)."""
        return self.stages.discrepancy.backward(rs, rt, grad_losses)

    @_stage("ranks_backward")
    def _ranks_backward(self, d: Tensor, scale: RowScale, grad_ranks: Tensor) -> Tensor:
        return self.stages.ranks.backward(d, scale, grad_ranks)

    @_stage("row_scale_backward")
    def _row_scale_backward(self, d: Tensor, scale: RowScale, grad_y: Tensor) -> Tensor:
        return self.stages.row_scale.backward(d, scale, grad_y)

    def side_backward(
        self, prepared: distances.PreparedFeatures, a: int, d: Tensor, scale: RowScale, grad_ranks: Tensor, out: Tensor
    ) -> None:
        """Add one side's ∂L/∂(prepared features) of rows [a, a + c) to ``out`` (n, p) float64."""
        grad_y = self._ranks_backward(d, scale, grad_ranks)
        self.dissimilarity_backward(prepared, a, d, self._row_scale_backward(d, scale, grad_y), out)


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


def _path_name(plan: ExecutionPlan) -> str:
    return f"'{plan.distance_stage}' dissimilarity stage + '{plan.rank_stage}' rank stage"


# ---------------------------------------------------------------------------------------------- loss
# Every op takes the call's settings as (settings, sizes) = Settings.pack() (settings.py); ``sizes`` is a SymInt
# list so that a dynamic n stays symbolic under torch.compile.


@_op(
    "coherence_loss",
    "(Tensor student, Tensor teacher, str settings, SymInt[] sizes) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
)
def coherence_loss(
    student: Tensor, teacher: Tensor, settings: str, sizes: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per-reference losses ℓ (end − start,) of student (n, p) and teacher (n, q) features for the plan's
    rows [start, end), then what the backward reuses: both sides' ranks if ``plan.keep_ranks`` and the
    student's dissimilarities if ``plan.keep_distances``, (m, n − 1) each ((0, n − 1) placeholders
    otherwise), and, always, everything of size O(n (p + q)): the student's row statistics (m, 4) and both
    sides' prepared features (``distances.pack``)."""
    call = Settings.unpack(settings, sizes)
    options, plan = call
    path = _Path(call)
    hard_teacher = options.teacher_ranks == "hard"
    ps, pt = _prepare(student, options.dissimilarity), _prepare(teacher, options.dissimilarity)
    (row_start, row_end), w = plan.rows, student.shape[0] - 1
    m = row_end - row_start
    losses = student.new_empty(m)
    ranks_s, ranks_t = (student.new_empty((m if plan.keep_ranks else 0, w)) for _ in range(2))
    dissimilarities_s = student.new_empty((m if plan.keep_distances else 0, w))
    statistics_s = torch.empty((m, 4), dtype=torch.float64, device=student.device)
    for a, b in path.blocks(row_start, row_end):
        ds, scale_s = path.side(ps, a, b)
        dt, scale_t = path.side(pt, a, b)
        rs = path.side_ranks(ds, scale_s, False)
        rt = path.side_ranks(dt, scale_t, hard_teacher)
        rows = slice(a - row_start, b - row_start)
        losses[rows] = path.losses(rs, rt)
        statistics_s[rows] = scale_s.statistics
        if plan.keep_ranks:
            ranks_s[rows], ranks_t[rows] = rs, rt
        if plan.keep_distances:
            dissimilarities_s[rows] = ds
    kept = (ranks_s, ranks_t, dissimilarities_s, statistics_s, distances.pack(ps), distances.pack(pt))
    return losses.add_(_poison(ps, pt)), *kept


@coherence_loss.register_fake
def _(student: Tensor, teacher: Tensor, settings: str, sizes: Sequence[int]) -> tuple[Tensor, ...]:
    plan = Settings.unpack(settings, sizes).plan
    (n, p), q = student.shape, teacher.shape[1]
    m, w = plan.rows[1] - plan.rows[0], n - 1
    ranks = student.new_empty((m if plan.keep_ranks else 0, w))
    dissimilarity_rows = student.new_empty((m if plan.keep_distances else 0, w))
    statistics = student.new_empty((m, 4), dtype=torch.float64)
    prepared = student.new_empty((n, p + 3), dtype=torch.float64), teacher.new_empty((n, q + 3), dtype=torch.float64)
    return student.new_empty(m), ranks, torch.empty_like(ranks), dissimilarity_rows, statistics, *prepared


@_op(
    "coherence_loss_backward",
    "(Tensor grad_losses, Tensor student, Tensor teacher, Tensor ranks_s, Tensor ranks_t, Tensor dissimilarities_s, "
    "Tensor statistics_s, Tensor prepared_s, Tensor prepared_t, str settings, SymInt[] sizes, bool student_grad, "
    "bool teacher_grad) -> (Tensor, Tensor)",
)
def coherence_loss_backward(
    grad_losses: Tensor,
    student: Tensor,
    teacher: Tensor,
    ranks_s: Tensor,
    ranks_t: Tensor,
    dissimilarities_s: Tensor,
    statistics_s: Tensor,
    prepared_s: Tensor,
    prepared_t: Tensor,
    settings: str,
    sizes: Sequence[int],
    student_grad: bool,
    teacher_grad: bool,
) -> tuple[Tensor, Tensor]:
    """(∂L/∂student, ∂L/∂teacher) for ∂L/∂ℓ = grad_losses; an empty tensor for a side not asked for."""
    call = Settings.unpack(settings, sizes)
    options, plan = call
    path = _Path(call)
    hard_teacher = options.teacher_ranks == "hard"
    ps = distances.unpack(prepared_s, options.dissimilarity, student.dtype)
    pt = distances.unpack(prepared_t, options.dissimilarity, teacher.dtype)
    teacher_grad = teacher_grad and not hard_teacher
    g, exponent = _power_of_two_scale(grad_losses)
    g = g.to(student.dtype)
    out_s = torch.zeros(ps.features.shape, dtype=torch.float64, device=student.device) if student_grad else None
    out_t = torch.zeros(pt.features.shape, dtype=torch.float64, device=teacher.device) if teacher_grad else None
    row_start, row_end = plan.rows
    for a, b in path.blocks(row_start, row_end):
        rows = slice(a - row_start, b - row_start)
        ds = dissimilarities_s[rows] if plan.keep_distances else path.dissimilarities(ps, a, b)
        ds, scale_s = path.scaled(ps, ds, statistics_s[rows])
        # The teacher's dissimilarities are needed for its own gradient, or to recompute its ranks.
        teacher_rows = path.side(pt, a, b) if out_t is not None or not plan.keep_ranks else None
        if plan.keep_ranks:
            rs, rt = ranks_s[rows], ranks_t[rows]
        else:
            assert teacher_rows is not None
            rs, rt = path.side_ranks(ds, scale_s, False), path.side_ranks(*teacher_rows, hard_teacher)
        grad_rs, grad_rt = path.losses_backward(rs, rt, g[rows])
        if out_s is not None:
            path.side_backward(ps, a, ds, scale_s, grad_rs, out_s)
        if out_t is not None and teacher_rows is not None:
            path.side_backward(pt, a, *teacher_rows, grad_rt, out_t)
    poison = _poison(ps, pt)
    return (
        _features_gradient(out_s, exponent - ps.exponent, student, poison),
        _features_gradient(out_t, exponent - pt.exponent, teacher, poison),
    )


@coherence_loss_backward.register_fake
def _(grad_losses: Tensor, student: Tensor, teacher: Tensor, *arguments: Any) -> tuple[Tensor, Tensor]:
    *_, settings, sizes, student_grad, teacher_grad = arguments
    hard_teacher = Settings.unpack(settings, sizes).options.teacher_ranks == "hard"
    s = torch.empty_like(student) if student_grad else student.new_empty(0)
    t = torch.empty_like(teacher) if teacher_grad and not hard_teacher else teacher.new_empty(0)
    return s, t


def _coherence_loss_setup(ctx, inputs: tuple, output: tuple) -> None:
    student, teacher, ctx.settings, ctx.sizes = inputs
    ctx.save_for_backward(student, teacher, *output[1:])
    # What the forward keeps for the backward is not differentiable: no zero gradients are made for it.
    ctx.mark_non_differentiable(*output[1:])
    ctx.set_materialize_grads(False)


def _coherence_loss_grad(ctx, grad_losses: Tensor | None, *_: Tensor) -> tuple:
    if grad_losses is None:  # grads are not materialized: no gradient reached the losses
        return None, None, None, None
    student, teacher, *kept = ctx.saved_tensors
    need_s, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_s, grad_t = coherence_loss_backward(
        grad_losses, student, teacher, *kept, ctx.settings, ctx.sizes, need_s, need_t
    )
    path = _path_name(Settings.unpack(ctx.settings, ctx.sizes).plan)
    anchors = (grad_losses, student, teacher)
    grad_s = _first_order_only(grad_s if need_s else None, path, anchors)
    grad_t = _first_order_only(grad_t if need_t and grad_t.numel() else None, path, anchors)
    return grad_s, grad_t, None, None


coherence_loss.register_autograd(_coherence_loss_grad, setup_context=_coherence_loss_setup)


def row_losses(student: Tensor, teacher: Tensor, options: LossOptions, plan: ExecutionPlan) -> Tensor:
    """Per-reference losses ℓ_i (end − start,) for the plan's rows, from student (n, p) and teacher (n, q)
    features of one computation dtype on one device (teacher detached for hard teacher ranks)."""
    losses, *_ = coherence_loss(student, teacher, *Settings(options, plan).pack())
    return losses


# ---------------------------------------------------------------------------------------- rank matrix


@_op("rank_matrix", "(Tensor x, str settings, SymInt[] sizes, bool hard) -> Tensor")
def _rank_matrix(x: Tensor, settings: str, sizes: Sequence[int], hard: bool) -> Tensor:
    """(n, n) ranks of features x (n, d), zero on the diagonal."""
    call = Settings.unpack(settings, sizes)
    path = _Path(call)
    prepared = _prepare(x, call.options.dissimilarity)
    n = x.shape[0]
    out = x.new_empty((n, n))
    for a, b in path.blocks(0, n):
        d, scale = path.side(prepared, a, b)
        out[a:b] = insert_diagonal(path.side_ranks(d, scale, hard), a)
    return out.add_(_poison(prepared))


@_rank_matrix.register_fake
def _(x: Tensor, *arguments: Any) -> Tensor:
    return x.new_empty((x.shape[0], x.shape[0]))


@_op("rank_matrix_backward", "(Tensor grad, Tensor x, str settings, SymInt[] sizes) -> Tensor")
def _rank_matrix_backward(grad: Tensor, x: Tensor, settings: str, sizes: Sequence[int]) -> Tensor:
    """∂L/∂x (n, d) for ∂L/∂R = grad (n, n) of the soft ranks."""
    call = Settings.unpack(settings, sizes)
    path = _Path(call)
    prepared = _prepare(x, call.options.dissimilarity)
    g, exponent = _power_of_two_scale(grad)
    g = g.to(x.dtype)
    out = torch.zeros(prepared.features.shape, dtype=torch.float64, device=x.device)
    for a, b in path.blocks(0, x.shape[0]):
        d, scale = path.side(prepared, a, b)
        path.side_backward(prepared, a, d, scale, drop_diagonal(g[a:b], a), out)
    return _features_gradient(out, exponent - prepared.exponent, x, _poison(prepared))


@_rank_matrix_backward.register_fake
def _(grad: Tensor, x: Tensor, *arguments: Any) -> Tensor:
    return torch.empty_like(x)


def _rank_matrix_setup(ctx, inputs: tuple, output: Tensor) -> None:
    x, ctx.settings, ctx.sizes, ctx.hard = inputs
    ctx.save_for_backward(x)


def _rank_matrix_grad(ctx, grad: Tensor) -> tuple:
    (x,) = ctx.saved_tensors
    if ctx.hard:
        return None, None, None, None
    grad_x = _rank_matrix_backward(grad, x, ctx.settings, ctx.sizes)
    path = _path_name(Settings.unpack(ctx.settings, ctx.sizes).plan)
    return _first_order_only(grad_x, path, (grad, x)), None, None, None


_rank_matrix.register_autograd(_rank_matrix_grad, setup_context=_rank_matrix_setup)


def rank_matrix(x: Tensor, options: LossOptions, plan: ExecutionPlan, hard: bool) -> Tensor:
    """(n, n) soft (or, if ``hard``, exact average, without gradient) ranks of features x (n, d)."""
    ranks = _rank_matrix(x, *Settings(options, plan).pack(), hard)
    return ranks.detach() if hard else ranks


# ------------------------------------------------------------------------------- dissimilarity matrix


@_op("dissimilarity_matrix", "(Tensor x, str settings, SymInt[] sizes) -> Tensor")
def _dissimilarity_matrix(x: Tensor, settings: str, sizes: Sequence[int]) -> Tensor:
    """(n, n) dissimilarities δ(x_i, x_j) of features x (n, d), zero on the diagonal; NaN in the rows and
    columns of samples with a non-finite feature."""
    call = Settings.unpack(settings, sizes)
    path = _Path(call)
    prepared = _prepare(x, call.options.dissimilarity)
    n = x.shape[0]
    out = x.new_empty((n, n))
    for a, b in path.blocks(0, n):
        d = torch.ldexp(path.dissimilarities(prepared, a, b).to(torch.float64), prepared.unit_exponent)
        out[a:b] = insert_diagonal(d.to(x.dtype), a)
    bad = ~torch.isfinite(x).all(dim=1)
    return out.masked_fill_(bad[:, None] | bad[None, :], torch.nan)


@_dissimilarity_matrix.register_fake
def _(x: Tensor, *arguments: Any) -> Tensor:
    return x.new_empty((x.shape[0], x.shape[0]))


@_op("dissimilarity_matrix_backward", "(Tensor grad, Tensor x, str settings, SymInt[] sizes) -> Tensor")
def _dissimilarity_matrix_backward(grad: Tensor, x: Tensor, settings: str, sizes: Sequence[int]) -> Tensor:
    """∂L/∂x (n, d) for ∂L/∂D = grad (n, n)."""
    call = Settings.unpack(settings, sizes)
    path = _Path(call)
    prepared = _prepare(x, call.options.dissimilarity)
    g, exponent = _power_of_two_scale(grad)
    g = g.to(x.dtype)
    out = torch.zeros(prepared.features.shape, dtype=torch.float64, device=x.device)
    for a, b in path.blocks(0, x.shape[0]):
        d = path.dissimilarities(prepared, a, b)
        path.dissimilarity_backward(prepared, a, d, drop_diagonal(g[a:b], a), out)
    exponent = exponent + prepared.unit_exponent - prepared.exponent
    return _features_gradient(out, exponent, x, _poison(prepared))


@_dissimilarity_matrix_backward.register_fake
def _(grad: Tensor, x: Tensor, *arguments: Any) -> Tensor:
    return torch.empty_like(x)


def _dissimilarity_matrix_setup(ctx, inputs: tuple, output: Tensor) -> None:
    x, ctx.settings, ctx.sizes = inputs
    ctx.save_for_backward(x)


def _dissimilarity_matrix_grad(ctx, grad: Tensor) -> tuple:
    (x,) = ctx.saved_tensors
    grad_x = _dissimilarity_matrix_backward(grad, x, ctx.settings, ctx.sizes)
    stage = Settings.unpack(ctx.settings, ctx.sizes).plan.distance_stage
    return _first_order_only(grad_x, f"'{stage}' dissimilarity stage", (grad, x)), None, None


_dissimilarity_matrix.register_autograd(_dissimilarity_matrix_grad, setup_context=_dissimilarity_matrix_setup)


def dissimilarity_matrix(x: Tensor, options: LossOptions, plan: ExecutionPlan) -> Tensor:
    """(n, n) dissimilarities (``options.dissimilarity``) of features x (n, d) by the plan's dissimilarity stage."""
    return _dissimilarity_matrix(x, *Settings(options, plan).pack())
