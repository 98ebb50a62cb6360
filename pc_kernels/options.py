"""The loss options shared by every backend, and their validation.

One frozen dataclass carries every option, so an option means the same thing in every
backend and a new option is added here, once. ``LossOptions.validated`` is the single place
where option values are checked; ``prepare_inputs`` is the single place where feature
tensors are checked and brought to their computation dtype.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import torch

from .binned_soft_ranks import MAX_BINS

DISSIMILARITIES = ("euclidean", "sqeuclidean", "cosine")
DISCREPANCIES = ("mse", "spearman")
TEACHER_RANKS = ("soft", "hard")
NORMALIZATIONS = ("row_std", "none")
REDUCTIONS = ("mean", "sum", "none")
BACKENDS = ("auto", "reference", "torch", "triton")
ALGORITHMS = ("dense", "binned")
FLOATING_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Added to a row's standard deviation before dividing by it (SPEC.md, "row_std").
ROW_STD_EPS = 1e-12
# Lower bound on a feature norm in the cosine dissimilarity (SPEC.md).
COSINE_NORM_EPS = 1e-8
# Added under the square root of the Spearman denominator (SPEC.md).
SPEARMAN_EPS = 1e-12


def _check_choice(name: str, value: object, accepted: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in accepted:
        choices = ", ".join(repr(a) for a in accepted)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def check_tau(tau: object) -> float:
    """Return ``tau`` as a float, or raise if it is not a finite real number > 0."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(f"tau must be a real number > 0; got {tau!r} of type {type(tau).__name__}")
    tau = float(tau)
    if not math.isfinite(tau) or tau <= 0.0:
        raise ValueError(f"tau must be a finite real number > 0; got {tau!r}")
    return tau


def check_dissimilarity(kind: object) -> str:
    """Return ``kind`` if it is one of DISSIMILARITIES, else raise a ValueError naming it."""
    _check_choice("dissimilarity", kind, DISSIMILARITIES)
    return kind  # type: ignore[return-value]


@dataclass(frozen=True)
class LossOptions:
    """Every option of the perception coherence loss (see SPEC.md and the README).

    Attributes:
        tau: sigmoid temperature τ > 0 of the soft ranks. Default 0.1.
        dissimilarity: "euclidean" (default), "sqeuclidean" or "cosine".
        discrepancy: "mse" (default) or "spearman": how one reference row's student
            ranks are compared with its teacher ranks.
        teacher_ranks: "soft" (default, same τ as the student) or "hard" (exact average
            ranks, no gradient to the teacher).
        normalize: "row_std" (default: divide each reference row's dissimilarities by
            their population standard deviation) or "none".
        reduction: "mean" (default), "sum" or "none" over the reference rows computed.
        backend: "auto" (default), "reference", "torch" or "triton".
        rows: ``None`` (default: every reference row) or ``(start, end)``: compute the
            loss only for reference rows ``start <= i < end``, each against the whole
            batch. "mean" then averages over those ``end - start`` rows.
        chunk_rows: reference rows processed together: the torch backend's rank chunk with
            algorithm="dense", either backend's block with algorithm="binned". ``None``
            (default) derives it from the backend's memory budget.
        distributed: ``False`` (default) or ``True``: when torch.distributed is initialized,
            treat each rank's features as its slice of a global batch (see
            ``pc_kernels.distributed``); a no-op otherwise. Excludes ``rows``.
        algorithm: "dense" (default: every sigmoid, O(n³)) or "binned" (torch and triton
            backends: each row's soft ranks as a kernel sum on a grid, by FFT, O(n² + n·B log B),
            within a documented error of the dense ones; see ``pc_kernels.binned_soft_ranks``).
        bins: algorithm="binned" only: ``None`` (default: grid chosen per batch so the soft
            ranks are within 1e-5 of the dense ones) or the number of grid nodes B per row
            (2 … 2**22).
    """

    tau: float = 0.1
    dissimilarity: str = "euclidean"
    discrepancy: str = "mse"
    teacher_ranks: str = "soft"
    normalize: str = "row_std"
    reduction: str = "mean"
    backend: str = "auto"
    rows: tuple[int, int] | None = None
    chunk_rows: int | None = None
    distributed: bool = False
    algorithm: str = "dense"
    bins: int | None = None

    def validated(self) -> "LossOptions":
        """Return a copy with ``tau`` as float and ``rows`` as a tuple; raise on bad values."""
        tau = check_tau(self.tau)
        check_dissimilarity(self.dissimilarity)
        _check_choice("discrepancy", self.discrepancy, DISCREPANCIES)
        _check_choice("teacher_ranks", self.teacher_ranks, TEACHER_RANKS)
        _check_choice("normalize", self.normalize, NORMALIZATIONS)
        _check_choice("reduction", self.reduction, REDUCTIONS)
        _check_choice("backend", self.backend, BACKENDS)
        rows = self.rows
        if rows is not None:
            if (
                not isinstance(rows, (tuple, list))
                or len(rows) != 2
                or not all(isinstance(r, numbers.Integral) and not isinstance(r, bool) for r in rows)
            ):
                raise TypeError(f"rows must be None or a pair of ints (start, end); got {rows!r}")
            rows = (int(rows[0]), int(rows[1]))
            if not 0 <= rows[0] < rows[1]:
                raise ValueError(f"rows must satisfy 0 <= start < end; got {rows!r}")
        chunk = self.chunk_rows
        if chunk is not None and (
            isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1
        ):
            raise ValueError(f"chunk_rows must be None or an int >= 1; got {chunk!r}")
        if not isinstance(self.distributed, bool):
            raise TypeError(f"distributed must be a bool; got {self.distributed!r}")
        if self.distributed and rows is not None:
            raise ValueError(
                f"rows must be None when distributed=True (each rank's rows are its own samples); got {rows!r}"
            )
        _check_choice("algorithm", self.algorithm, ALGORITHMS)
        bins = self.bins
        if bins is not None:
            if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or not 2 <= bins <= MAX_BINS:
                raise ValueError(f"bins must be None or an int from 2 to {MAX_BINS}; got {bins!r}")
            if self.algorithm != "binned":
                raise ValueError(f"bins applies only to algorithm='binned'; got bins={bins!r} with algorithm='dense'")
        if self.algorithm == "binned" and self.backend == "reference":
            raise ValueError(
                "algorithm='binned' runs on backend 'torch', 'triton' or 'auto'; the reference backend "
                "computes algorithm='dense' only"
            )
        return replace(self, tau=tau, rows=rows, bins=None if bins is None else int(bins))

    def row_range(self, n: int) -> tuple[int, int]:
        """The reference rows [start, end) computed for a batch of n samples."""
        if self.rows is None:
            return 0, n
        start, end = self.rows
        if end > n:
            raise ValueError(f"rows must satisfy end <= n = {n} (the batch size); got {self.rows!r}")
        return start, end


def computation_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """float64 if any input is float64, else float32 (fp16/bf16 are computed in float32)."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def _check_features(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, ...); got {type(x).__name__}")
    if x.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor; got layout {x.layout}")
    if x.dtype not in FLOATING_DTYPES:
        raise TypeError(
            f"{name} must have a floating dtype (float16, bfloat16, float32 or float64); got {x.dtype}"
        )
    if x.dim() == 0:
        raise ValueError(f"{name} must have shape (n, ...) with n >= 3; got a 0-d tensor")
    if x.shape[0] < 3:
        raise ValueError(f"{name} must hold n >= 3 samples (shape (n, ...)); got shape {tuple(x.shape)}")
    flat = x.reshape(x.shape[0], -1)
    if flat.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature per sample; got shape {tuple(x.shape)}")
    return flat


def check_features(name: str, x: object) -> torch.Tensor:
    """Validate one feature tensor and return it flattened to (n, d) in its computation dtype."""
    flat = _check_features(name, x)
    return flat.to(computation_dtype(flat.dtype))


def prepare_inputs(student: object, teacher: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (student, teacher) pair and return both as 2-D tensors of one computation dtype.

    student (n, ...) and teacher (n, ...) are flattened to (n, p) and (n, q). The computation
    dtype is float64 if either is float64, else float32. Inputs are never modified; the
    result may share memory with them (a view) when no conversion is needed.
    """
    s = _check_features("student", student)
    t = _check_features("teacher", teacher)
    if s.shape[0] != t.shape[0]:
        raise ValueError(
            "student and teacher must hold the same number of samples n; "
            f"got student with n = {s.shape[0]} and teacher with n = {t.shape[0]}"
        )
    if s.device != t.device:
        raise ValueError(
            f"student and teacher must be on the same device; got student on {s.device} "
            f"and teacher on {t.device}"
        )
    dtype = computation_dtype(s.dtype, t.dtype)
    return s.to(dtype), t.to(dtype)
