"""The user API: the loss as a function and as an ``nn.Module``, plus the rank and dissimilarity matrices.

Everything here validates inputs and options, resolves the execution plan (``plan.py``), hands the
work to the pipeline of the fast paths (``pipeline.py``) or to the reference oracle (``reference.py``)
and applies the reduction. The formulas are in docs/spec.md.
"""

from __future__ import annotations

import torch
from torch import nn

from . import pipeline, reference
from .distributed import distributed_active, global_batch_loss
from .options import LossOptions, check_dissimilarity, check_features, prepare_inputs
from .plan import ExecutionPlan, resolve_plan


def _reduce(per_row: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_row.mean()
    if reduction == "sum":
        return per_row.sum()
    return per_row


def _single_process_loss(
    student: torch.Tensor, teacher: torch.Tensor, options: LossOptions
) -> tuple[torch.Tensor, ExecutionPlan]:
    s, t = prepare_inputs(student, teacher)
    sides = 1 if options.teacher_ranks == "hard" else 2
    plan = resolve_plan(options, s.device, s.shape[0], max(s.shape[1], t.shape[1]), s.dtype, soft_sides=sides)
    if options.teacher_ranks == "hard":
        t = t.detach()
    with torch.autocast(device_type=s.device.type, enabled=False):
        if plan.backend == "reference":
            per_row = reference.row_losses(s, t, options)
        else:
            per_row = pipeline.row_losses(s, t, options, plan)
    return _reduce(per_row, options.reduction), plan


def compute_loss(
    student: torch.Tensor, teacher: torch.Tensor, options: LossOptions
) -> tuple[torch.Tensor, ExecutionPlan]:
    """The loss for validated ``options`` and the plan that computed it.

    With ``options.distributed`` and torch.distributed initialized, the features are this process's
    slice of a global batch (``pc_kernels.distributed.global_batch_loss``).
    """
    if options.distributed and distributed_active():
        return global_batch_loss(student, teacher, options, _single_process_loss)
    return _single_process_loss(student, teacher, options)


def perception_coherence_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    tau: float = 0.1,
    dissimilarity: str = "euclidean",
    discrepancy: str = "mse",
    teacher_ranks: str = "soft",
    normalize: str = "row_std",
    reduction: str = "mean",
    backend: str = "auto",
    rows: tuple[int, int] | None = None,
    chunk_rows: int | None = None,
    distributed: bool = False,
    algorithm: str = "auto",
    bins: int | None = None,
) -> torch.Tensor:
    """Perception coherence loss between student and teacher features of one batch.

    For each reference sample i, the other samples are ranked by their dissimilarity to it, softly
    (a sigmoid of temperature τ), once in the student's feature space and once in the teacher's; the
    loss compares the two rankings (docs/spec.md; Nguyen et al., "Feature Representation Transferring
    to Lightweight Models via Perception Coherence", TMLR 2026).

    Args:
        student: (n, p) student features, or (n, ...) flattened to (n, −1); n >= 3. A 1-D tensor is
            refused (ValueError), not read as (n, 1): pass x[:, None] for one feature per sample.
        teacher: (n, q) teacher features of the same n samples in the same order.
        tau: sigmoid temperature τ > 0 of the soft ranks (units of the row scale). Default 0.1.
        dissimilarity: "euclidean" (default), "sqeuclidean" or "cosine".
        discrepancy: "mse" (default: mean squared rank difference, in [0, 1]), "spearman" (1 − ρ) or
            "reciprocal_rank_mse" (squared rank differences weighted by the reciprocal of each
            candidate's teacher rank, in [0, 1]: emphasis on the teacher's nearest candidates).
        teacher_ranks: "soft" (default, same τ as the student) or "hard" (exact average ranks; no
            gradient to the teacher).
        normalize: "row_std" (default: each reference row divided by its standard deviation, which
            makes the loss invariant to rescaling either feature set) or "none".
        reduction: "mean" (default), "sum" or "none" (the (end − start,) per-reference losses).
        backend: "auto" (default: "triton" for CUDA tensors when Triton is installed, else "torch"),
            "reference" (plain autograd, n³ memory: the oracle), "torch" or "triton".
        rows: None (every reference row) or (start, end): only reference rows start <= i < end, each
            against the whole batch; "mean" then averages over those rows.
        chunk_rows: reference rows the pipeline runs through all its stages at once, rounded up to a
            multiple of 64 (None: from a memory budget). Changes memory use and speed, never the result.
        distributed: when True and torch.distributed is initialized, student and teacher are this
            process's (n_r, ·) slice of a global batch of N = Σ_r n_r samples: features are
            all-gathered, each process computes its own n_r reference rows against all N, and the value
            is the single-process loss on the concatenated batch, with a gradient scaled so that DDP's
            average is that loss's gradient ("none": this process's (n_r,) own-row losses). See
            ``pc_kernels.distributed``. A no-op when not initialized. Default False.
        algorithm: "auto" (default), "dense" (every sigmoid, O(n³), exact) or "binned" (backends "torch"
            and "triton": each row's soft ranks and their gradient as kernel sums on a grid by FFT,
            O(n² + n·B log B), within 1e-5 of the dense ones; docs/binned.md). "auto" runs "binned" from
            n = ``plan.AUTO_BINNED_FROM`` of the device on (CPU: 128, 192 without numba; CUDA: 2048;
            n of the whole batch, also with ``rows`` or ``distributed``) and "dense" below and on the
            reference backend, so its results are within the binned bound of the dense ones;
            ``last_plan`` says which ran.
        bins: with algorithm="binned" only: None (default: grid chosen for the 1e-5 bound) or B in
            [2, 2**22] grid nodes per row.

    Returns:
        A scalar for reduction "mean"/"sum", else the (end − start,) vector of per-reference losses.
        float64 if either input is float64, else float32 (float16 and bfloat16 inputs are computed in
        float32). NaN (value and gradients) if any feature is NaN or ±inf.

    Raises:
        TypeError: a feature tensor that is not a dense floating tensor, or an option of the wrong type.
        ValueError: n < 3, different sample counts or devices, an option value it does not accept (the
            message names the option, the value received and what is accepted), a combination that
            cannot run (``bins`` without algorithm="binned", binned on the reference backend, ``rows``
            with ``distributed``), a binned grid above 2**22 nodes, or a reference-backend call above
            its memory limit; with ``distributed``, processes that disagree on options or sizes.
        RuntimeError: backend="triton" where Triton cannot run (the message says what to install or set),
            or double backward through a path whose backward is hand-written (use backend="reference").
    """
    options = LossOptions(
        tau=tau,
        dissimilarity=dissimilarity,
        discrepancy=discrepancy,
        teacher_ranks=teacher_ranks,
        normalize=normalize,
        reduction=reduction,
        backend=backend,
        rows=rows,
        chunk_rows=chunk_rows,
        distributed=distributed,
        algorithm=algorithm,
        bins=bins,
    ).validated()
    return compute_loss(student, teacher, options)[0]


class PerceptionCoherenceLoss(nn.Module):
    """Perception coherence loss as an ``nn.Module``.

    Every argument is an option of ``perception_coherence_loss`` (see its documentation for each):
    tau=0.1, dissimilarity="euclidean", discrepancy="mse", teacher_ranks="soft", normalize="row_std",
    reduction="mean", backend="auto", rows=None, chunk_rows=None, distributed=False, algorithm="auto",
    bins=None. Options are validated once, at construction.

    Shapes:
        student: (n, p) or (n, ...), n >= 3; teacher: (n, q) or (n, ...), the same n samples.
        Output: () for reduction "mean"/"sum", (end − start,) for "none".

    After a call, ``last_plan`` (``pc_kernels.plan.ExecutionPlan``) says how it ran: backend, algorithm,
    stages, row blocks, what the forward kept for the backward; ``last_backend`` is its backend name.

    Example::

        criterion = PerceptionCoherenceLoss(tau=0.1)
        loss = criterion(student_net(x), teacher_net(x).detach())
        loss.backward()
        print(criterion.last_plan.describe())
    """

    def __init__(
        self,
        tau: float = 0.1,
        dissimilarity: str = "euclidean",
        discrepancy: str = "mse",
        teacher_ranks: str = "soft",
        normalize: str = "row_std",
        reduction: str = "mean",
        backend: str = "auto",
        rows: tuple[int, int] | None = None,
        chunk_rows: int | None = None,
        distributed: bool = False,
        algorithm: str = "auto",
        bins: int | None = None,
    ) -> None:
        """Validate and keep the options (see the class docstring and ``perception_coherence_loss``).

        Raises:
            TypeError: an option of the wrong type.
            ValueError: an option value it does not accept (the message names the option, the value
                received and what is accepted), or a combination that cannot run.
        """
        super().__init__()
        self.options = LossOptions(
            tau=tau,
            dissimilarity=dissimilarity,
            discrepancy=discrepancy,
            teacher_ranks=teacher_ranks,
            normalize=normalize,
            reduction=reduction,
            backend=backend,
            rows=rows,
            chunk_rows=chunk_rows,
            distributed=distributed,
            algorithm=algorithm,
            bins=bins,
        ).validated()
        self.last_plan: ExecutionPlan | None = None

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The loss of student (n, p) and teacher (n, q) features; see ``perception_coherence_loss``.

        Raises:
            TypeError, ValueError, RuntimeError: as ``perception_coherence_loss`` for the features, the
                plan and the backend.
        """
        loss, self.last_plan = compute_loss(student, teacher, self.options)
        return loss

    @property
    def last_backend(self) -> str | None:
        """The backend that computed the last call ("reference", "torch" or "triton"), None before one."""
        return None if self.last_plan is None else self.last_plan.backend

    def extra_repr(self) -> str:
        return self.options.describe()


def soft_ranks(
    features: torch.Tensor,
    *,
    tau: float = 0.1,
    dissimilarity: str = "euclidean",
    normalize: str = "row_std",
    hard: bool = False,
    backend: str = "auto",
    algorithm: str = "auto",
    bins: int | None = None,
) -> torch.Tensor:
    """The (n, n) rank matrix R of one feature set, with a zero diagonal (docs/spec.md, "Soft rank").

    R_ij ∈ (0, 1) is the soft fraction of the other candidates k ∉ {i, j} that lie closer to reference
    i than j does: (1/(n−2)) Σ_k σ((D~_ij − D~_ik)/τ). With ``hard=True`` the sigmoid is the step
    function (½ at ties): exact average ranks, rescaled to [0, 1], without gradient.

    Args:
        features: (n, d) or (n, ...) floating tensor, n >= 3.
        tau, dissimilarity, normalize, backend, algorithm, bins: as in ``perception_coherence_loss``.
        hard: exact ranks instead of soft ones. Default False.

    Returns:
        (n, n) tensor of the computation dtype (float64 for float64 features, else float32); NaN if any
        feature is NaN or ±inf.

    Raises:
        TypeError: ``features`` not a dense floating tensor, ``hard`` not a bool, or an option of the
            wrong type.
        ValueError: n < 3, an option value it does not accept, a binned grid above 2**22 nodes, or a
            reference-backend call above its memory limit.
        RuntimeError: backend="triton" where Triton cannot run, or double backward through a path
            whose backward is hand-written.
    """
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be a bool; got {hard!r}")
    options = LossOptions(
        tau=tau, dissimilarity=dissimilarity, normalize=normalize, backend=backend, algorithm=algorithm, bins=bins
    ).validated()
    x = check_features("features", features)
    plan = resolve_plan(options, x.device, x.shape[0], x.shape[1], x.dtype, soft_sides=1)
    with torch.autocast(device_type=x.device.type, enabled=False):
        if plan.backend == "reference":
            return reference.rank_matrix(x, options, hard)
        return pipeline.rank_matrix(x, options, plan, hard)


def pairwise_dissimilarity(features: torch.Tensor, kind: str = "euclidean", *, backend: str = "auto") -> torch.Tensor:
    """(n, n) dissimilarities δ(x_i, x_j) of (n, d) (or (n, ...)) features, zero on the diagonal.

    Args:
        features: (n, d) or (n, ...) floating tensor, n >= 3.
        kind: "euclidean" (default) ‖x_i − x_j‖, "sqeuclidean" ‖x_i − x_j‖², or "cosine"
            1 − <x_i, x_j> / (max(‖x_i‖, 1e-8) · max(‖x_j‖, 1e-8)).
        backend: as in ``perception_coherence_loss``.

    Returns:
        (n, n) tensor of the computation dtype; NaN in the rows and columns of samples with a NaN or
        ±inf feature.

    Raises:
        TypeError: ``features`` not a dense floating tensor.
        ValueError: n < 3, or ``kind`` or ``backend`` not one of the accepted values.
        RuntimeError: backend="triton" where Triton cannot run, or double backward through a path
            whose backward is hand-written.
    """
    options = LossOptions(dissimilarity=check_dissimilarity(kind, "kind"), backend=backend).validated()
    x = check_features("features", features)
    plan = resolve_plan(options, x.device, x.shape[0], x.shape[1], x.dtype, soft_sides=0)
    with torch.autocast(device_type=x.device.type, enabled=False):
        if plan.backend == "reference":
            return reference.pairwise_dissimilarity(x, kind)
        return pipeline.dissimilarity_matrix(x, options, plan)
