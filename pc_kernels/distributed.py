"""The loss over the global batch when training runs in several processes (torch.distributed, DDP).

With ``distributed=True`` and an initialized default process group of W ranks, where rank r holds
n_r samples (sizes may differ), every rank

1. all-gathers one small fingerprint (local sizes, feature sizes, dtypes, options) and raises the
   same ValueError on every rank if they disagree, instead of hanging in a mismatched collective;
2. all-gathers the student features (autograd-aware: see ``_GatherBlocks``) and the teacher
   features (autograd-aware only when they require grad and teacher ranks are soft), so that it
   sees the global batch of N = Σ_r n_r samples in rank order;
3. computes only its own reference rows [o_r, o_r + n_r) (o_r = Σ_{s<r} n_s, its local samples)
   against all N candidates, so the cubic work is split across ranks, not repeated.

Scale. Let L = Σ_r L_r be the single-process loss on the concatenated batch, where L_r is rank
r's share: (1/N) Σ_{i ∈ rows(r)} ℓ_i for reduction "mean", Σ_{i ∈ rows(r)} ℓ_i for "sum". Rank s's
features x_s feed every rank's share, and the gather's backward sums those gradients, so rank s
holds ∂(c·Σ_r L_r)/∂x_s · ∂x_s/∂θ = c · (rank s's data's part of ∂L/∂θ) when it backpropagates
c·L_r. DDP then averages over ranks: (c/W) Σ_s (part of s) = (c/W) ∂L/∂θ. Hence c = W: each rank
backpropagates W·L_r, and after DDP's average every parameter's gradient is ∂L/∂θ — whatever
the local sizes. Other loss terms keep their usual DDP meaning (the mean over ranks).

Reported value. The returned scalar is ``W·L_r + (Σ_r L_r − W·L_r).detach()``: its value is L
(one all-reduce of the detached shares), its gradient that of W·L_r. Every rank returns L.

reduction="none" returns this rank's own rows' losses (ℓ_i for its n_r local samples, in local
order, each computed against the global batch) with the values unchanged and the gradient
scaled by W the same way, so ``loss.sum()`` (or any per-sample weighting Σ w_i ℓ_i applied on
every rank) backpropagated under DDP gives the gradient of the same sum over the global batch.

Communication per step, per rank (d = p + q, b = bytes per element of the input dtype, m =
max_r n_r): forward: one all-gather of the fingerprint (17 int64 per rank, then one host sync to
read the sizes), one all-gather each of the padded student and teacher features (W · m · d · b
bytes received in all), one all-reduce of one scalar; backward: one all-reduce of the (W · m, p)
student-feature gradient (and of the (W · m, q) teacher one, when the teacher requires grad).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .options import LossOptions, check_batch_shape, option_fields
from .plan import ExecutionPlan

# The single-process loss on a whole (global) batch: features, options → (loss, execution plan).
LocalLoss = Callable[[torch.Tensor, torch.Tensor, LossOptions], tuple[torch.Tensor, ExecutionPlan]]

# Options that must agree on every rank, as declared in LossOptions (chunk_rows only changes memory
# use; rows is set here).
_AGREED_OPTIONS = tuple(f.name for f in option_fields() if f.metadata["agreed"])


def distributed_active() -> bool:
    """Whether torch.distributed is available and its default process group is initialized."""
    return dist.is_available() and dist.is_initialized()


def _flatten(name: str, x: object) -> torch.Tensor:
    """(n, ...) local features → (n, d); n may be 0 here (checked across ranks later)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, ...); got {type(x).__name__}")
    check_batch_shape(name, x)
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _code(value: object) -> int:
    """An int that stands for ``value`` identically in every process (``hash`` is salted per process)."""
    if isinstance(value, int):
        return int(value)
    digest = hashlib.blake2b(repr(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _agreed_fields(student: torch.Tensor, teacher: torch.Tensor, options: LossOptions) -> dict[str, object]:
    """What every rank must pass identically, by name."""
    fields: dict[str, object] = {
        "student features per sample": student.shape[1],
        "teacher features per sample": teacher.shape[1],
        "student dtype": student.dtype,
        "teacher dtype": teacher.dtype,
        "student requires_grad": student.requires_grad,
        "teacher requires_grad": teacher.requires_grad,
    }
    fields.update({name: getattr(options, name) for name in _AGREED_OPTIONS})
    return fields


def _disagreements(table: list[list[int]], fields: dict[str, object], rank: int) -> list[str]:
    """One line per field whose code differs across the ranks' rows of ``table``."""
    lines = []
    for column, (name, value) in enumerate(fields.items(), start=2):
        codes = [row[column] for row in table]
        if len(set(codes)) == 1:
            continue
        if isinstance(value, int):
            lines.append(f"{name}: {codes} (by rank)")
        else:
            differ = [r for r, code in enumerate(codes) if code != codes[0]]
            lines.append(f"{name}: ranks {differ} differ from rank 0; this rank ({rank}) has {value!r}")
    return lines


def _local_sizes(student: torch.Tensor, teacher: torch.Tensor, options: LossOptions) -> list[int]:
    """Every rank's local batch size, after checking that the ranks agree on everything else.

    One all-gather of a small int64 fingerprint; every rank raises the same ValueError on a
    disagreement, so none is left waiting in the feature gather.
    """
    fields = _agreed_fields(student, teacher, options)
    local = torch.tensor(
        [student.shape[0], teacher.shape[0]] + [_code(v) for v in fields.values()],
        dtype=torch.int64,
        device=student.device,
    )
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local)
    table = torch.stack(parts).tolist()
    lines = _disagreements(table, fields, dist.get_rank())
    if lines:
        raise ValueError(
            "distributed=True needs every rank to pass the same options, dtypes and feature sizes; "
            "the ranks disagree on " + "; ".join(lines)
        )
    sizes = [row[0] for row in table]
    teacher_sizes = [row[1] for row in table]
    if sizes != teacher_sizes:
        raise ValueError(
            "student and teacher must hold the same number of samples on every rank; got local "
            f"student sizes {sizes} and teacher sizes {teacher_sizes} (by rank)"
        )
    if min(sizes) < 1:
        raise ValueError(f"distributed=True needs at least one sample on every rank; got local sizes {sizes} (by rank)")
    return sizes


class _GatherBlocks(torch.autograd.Function):
    """All-gather of one (m, d) block per rank (same m everywhere) into (W·m, d), in rank order.

    Backward: this rank's block feeds every rank's loss, so its gradient is the sum over ranks
    of the gradients w.r.t. rows [r·m, (r+1)·m) of the gathered tensor: an all-reduce (supported
    by every torch.distributed backend) of the (W·m, d) gradient, of which this rank keeps its rows.
    """

    @staticmethod
    def forward(ctx, block: torch.Tensor) -> torch.Tensor:
        block = block.contiguous()
        parts = [torch.empty_like(block) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, block)
        ctx.own_rows = (dist.get_rank() * block.shape[0], (dist.get_rank() + 1) * block.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        start, end = ctx.own_rows
        return total[start:end]


def _gather_global(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """(n_r, d) on rank r → (N, d): every rank's rows in rank order (N = Σ sizes), padded to the largest."""
    longest = max(sizes)
    gathered = _GatherBlocks.apply(F.pad(x, (0, 0, 0, longest - x.shape[0])))
    keep = torch.cat([torch.arange(r * longest, r * longest + n) for r, n in enumerate(sizes)])
    return gathered.index_select(0, keep.to(x.device))


def _scaled_gradient(part: torch.Tensor, value: torch.Tensor, world_size: int) -> torch.Tensor:
    """A tensor with the value of ``value`` and the gradient of ``world_size · part``."""
    scaled = part * world_size
    return scaled + (value - scaled).detach()


def global_batch_loss(
    student: torch.Tensor, teacher: torch.Tensor, options: LossOptions, local_loss: LocalLoss
) -> tuple[torch.Tensor, ExecutionPlan]:
    """The loss of the global batch split across the ranks of the default process group.

    Args:
        student: (n_r, p) or (n_r, ...) this rank's student features, n_r >= 1; n_r may differ
            across ranks, p may not. The global batch needs N = Σ_r n_r >= 3.
        teacher: (n_r, q) or (n_r, ...) this rank's teacher features of the same samples.
        options: validated options; they must agree on every rank (``chunk_rows`` excepted).
        local_loss: the single-process loss on whole feature tensors, returning (loss, plan).

    Returns:
        (loss, execution plan of this process's rows). For "mean"/"sum" the loss value is that of one process on the
        concatenated batch and its gradient is W times this rank's share (see the module
        docstring); for "none", the (n_r,) losses of this rank's own samples.
    """
    student_local = _flatten("student", student)
    teacher_local = _flatten("teacher", teacher)
    if options.teacher_ranks == "hard":
        teacher_local = teacher_local.detach()
    sizes = _local_sizes(student_local, teacher_local, options)
    student_all = _gather_global(student_local, sizes)
    teacher_all = _gather_global(teacher_local, sizes)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    start = sum(sizes[:rank])
    own_rows = replace(
        options,
        rows=(start, start + sizes[rank]),
        reduction="none" if options.reduction == "none" else "sum",
        distributed=False,
    )
    part, plan = local_loss(student_all, teacher_all, own_rows)
    if options.reduction == "mean":
        part = part / sum(sizes)
    value = part.detach().clone()
    if options.reduction != "none":
        dist.all_reduce(value)
    return _scaled_gradient(part, value, world_size), plan
