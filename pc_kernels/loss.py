"""The user API: the loss as a function and as an nn.Module, plus rank and dissimilarity helpers.

Everything here validates inputs and options, resolves the backend and applies the reduction;
the backends themselves only compute per-reference losses (see ``backends.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from .backends import backend_module, resolve_backend
from .distributed import distributed_active, global_batch_loss
from .options import LossOptions, check_dissimilarity, check_features, prepare_inputs


def _reduce(per_row: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_row.mean()
    if reduction == "sum":
        return per_row.sum()
    return per_row


def compute_loss(student: torch.Tensor, teacher: torch.Tensor, options: LossOptions) -> tuple[torch.Tensor, str]:
    """The loss for validated ``options``, and the name of the backend that computed it.

    With ``options.distributed`` and torch.distributed initialized, the features are this
    rank's slice of a global batch (``pc_kernels.distributed.global_batch_loss``).
    """
    if options.distributed and distributed_active():
        return global_batch_loss(student, teacher, options, _single_process_loss)
    return _single_process_loss(student, teacher, options)


def _single_process_loss(
    student: torch.Tensor, teacher: torch.Tensor, options: LossOptions
) -> tuple[torch.Tensor, str]:
    s, t = prepare_inputs(student, teacher)
    name = resolve_backend(options.backend, s.device)
    if options.teacher_ranks == "hard":
        t = t.detach()
    with torch.autocast(device_type=s.device.type, enabled=False):
        per_row = backend_module(name).row_losses(s, t, options)
    return _reduce(per_row, options.reduction), name


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
    algorithm: str = "dense",
    bins: int | None = None,
) -> torch.Tensor:
    """Perception coherence loss between student and teacher features of one batch.

    Args:
        student: (n, p) student features, or (n, ...) flattened to (n, -1); n >= 3.
        teacher: (n, q) teacher features of the same n samples in the same order.
        tau: sigmoid temperature of the soft ranks, > 0. Default 0.1.
        dissimilarity: "euclidean" (default), "sqeuclidean" or "cosine".
        discrepancy: "mse" (default) or "spearman".
        teacher_ranks: "soft" (default) or "hard" (no gradient to the teacher).
        normalize: "row_std" (default) or "none".
        reduction: "mean" (default), "sum" or "none".
        backend: "auto" (default: "triton" for CUDA tensors, else "torch"), "reference",
            "torch" or "triton".
        rows: ``None`` (all reference rows) or ``(start, end)`` to compute only reference
            rows ``start <= i < end`` against the whole batch.
        chunk_rows: reference rows processed together: the torch backend's rank chunk with
            algorithm="dense", the block of either backend with algorithm="binned"; ``None``
            derives it from a memory budget.
        distributed: when True and torch.distributed is initialized, student and teacher are
            this rank's (n_r, ·) slice of a global batch of N = Σ_r n_r samples: the features
            are all-gathered, this rank computes its own n_r reference rows against all N, and
            the result has the value of the single-process loss on the concatenated batch and
            a gradient scaled by the world size, so that after DDP averages gradients every
            parameter's gradient equals that loss's ("none": this rank's (n_r,) own-row
            losses). See ``pc_kernels.distributed``. A no-op when not initialized. Default False.
        algorithm: "dense" (default) computes every sigmoid: O(n³). "binned" (backends "torch"
            and "triton") computes each reference row's soft ranks and their gradient as kernel
            sums on a grid by FFT: O(n² + n·B log B), with normalized soft ranks within
            0.024·(h/τ)² of the dense ones (h the grid spacing). See ``pc_kernels.binned_soft_ranks``.
        bins: with algorithm="binned": ``None`` (default) picks the grid so the soft ranks are
            within 1e-5 of the dense ones; an int B in [2, 2**22] puts B nodes across each row.

    Returns:
        A scalar for reduction "mean"/"sum", else the (end − start,) vector of per-reference
        losses. Its dtype is float64 if either input is float64, else float32 (float16 and
        bfloat16 inputs are computed in float32).
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
    """Perception coherence loss as an ``nn.Module``; see ``perception_coherence_loss``.

    Options are validated once, at construction. ``forward(student, teacher)`` takes
    student features (n, p) and teacher features (n, q) and returns the loss. After a call,
    ``last_backend`` names the backend that computed it ("reference", "torch" or "triton").

    Example::

        criterion = PerceptionCoherenceLoss(tau=0.1)
        loss = criterion(student_net(x), teacher_net(x).detach())
        loss.backward()
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
        algorithm: str = "dense",
        bins: int | None = None,
    ) -> None:
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
        self.last_backend: str | None = None

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        loss, self.last_backend = compute_loss(student, teacher, self.options)
        return loss

    def extra_repr(self) -> str:
        o = self.options
        return (
            f"tau={o.tau}, dissimilarity={o.dissimilarity!r}, discrepancy={o.discrepancy!r}, "
            f"teacher_ranks={o.teacher_ranks!r}, normalize={o.normalize!r}, "
            f"reduction={o.reduction!r}, backend={o.backend!r}, rows={o.rows}, chunk_rows={o.chunk_rows}, "
            f"distributed={o.distributed}, algorithm={o.algorithm!r}, bins={o.bins}"
        )


def soft_ranks(
    features: torch.Tensor,
    *,
    tau: float = 0.1,
    dissimilarity: str = "euclidean",
    normalize: str = "row_std",
    hard: bool = False,
    backend: str = "auto",
    algorithm: str = "dense",
    bins: int | None = None,
) -> torch.Tensor:
    """The (n, n) rank matrix R of SPEC.md for one feature set, with a zero diagonal.

    R_ij ∈ (0, 1) is the soft fraction of the other candidates k ∉ {i, j} that lie closer
    to reference i than j does: (1/(n−2)) Σ_k σ((D~_ij − D~_ik)/τ). With ``hard=True`` the
    sigmoid is the step function (½ at ties): exact average ranks, rescaled to [0, 1].

    Args:
        features: (n, d) or (n, ...) floating tensor, n >= 3.
        tau, dissimilarity, normalize, backend, algorithm, bins: as in ``perception_coherence_loss``.
        hard: exact ranks instead of soft ones (no gradient).
    """
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be a bool; got {hard!r}")
    options = LossOptions(
        tau=tau, dissimilarity=dissimilarity, normalize=normalize, backend=backend, algorithm=algorithm, bins=bins
    ).validated()
    x = check_features("features", features)
    name = resolve_backend(options.backend, x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return backend_module(name).rank_matrix(x, options, hard)


def pairwise_dissimilarity(
    features: torch.Tensor, kind: str = "euclidean", *, backend: str = "auto"
) -> torch.Tensor:
    """(n, d) (or (n, ...)) features → (n, n) dissimilarities with a zero diagonal.

    kind: "euclidean" (default) ||x_i − x_j||, "sqeuclidean" ||x_i − x_j||², or "cosine"
    1 − <x_i, x_j> / (max(||x_i||, 1e-8) · max(||x_j||, 1e-8)).
    """
    check_dissimilarity(kind)
    x = check_features("features", features)
    name = resolve_backend(LossOptions(backend=backend).validated().backend, x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return backend_module(name).pairwise_dissimilarity(x, kind)
