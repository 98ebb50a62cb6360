"""The loss options, declared once, and the checks of options and feature tensors.

``LossOptions`` is the one declaration of every option: each field carries its default and, as
metadata, what it accepts, a one-line description and whether every process of a distributed run must
pass the same value. The public signatures (``perception_coherence_loss``, ``PerceptionCoherenceLoss``),
the module's repr, the distributed agreement check and the README's option table follow from it or are
checked against it by the tests. ``LossOptions.validated`` is the single place where option values are
checked; ``prepare_inputs`` the single place where feature tensors are checked and brought to their
computation dtype. The formulas behind the options are in docs/spec.md.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

DISSIMILARITIES = ("euclidean", "sqeuclidean", "cosine")
DISCREPANCIES = ("mse", "spearman", "reciprocal_rank_mse")
TEACHER_RANKS = ("soft", "hard")
NORMALIZATIONS = ("row_std", "none")
REDUCTIONS = ("mean", "sum", "none")
BACKENDS = ("auto", "reference", "torch", "triton")
ALGORITHMS = ("auto", "dense", "binned")
FLOATING_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Largest grid (nodes per row) of algorithm="binned", automatic or given as ``bins``.
MAX_BINS = 2**22

# Added to a row's standard deviation before dividing by it (docs/spec.md, "Per-reference scale").
ROW_STD_EPS = 1e-12
# Lower bound on a feature norm in the cosine dissimilarity (docs/spec.md, "Dissimilarity").
COSINE_NORM_EPS = 1e-8
# Added under the square root of the Spearman denominator (docs/spec.md, "Discrepancy").
SPEARMAN_EPS = 1e-12


def _option(default: Any, accepted: str, doc: str, *, choices: tuple[str, ...] = (), agreed: bool = True) -> Any:
    return field(default=default, metadata={"accepted": accepted, "doc": doc, "choices": choices, "agreed": agreed})


def _one_of(choices: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in choices)


@dataclass(frozen=True)
class LossOptions:
    """Every option of the perception coherence loss; see ``perception_coherence_loss`` and docs/spec.md."""

    tau: float = _option(0.1, "a finite real number > 0", "sigmoid temperature τ of the soft ranks")
    dissimilarity: str = _option(
        "euclidean", _one_of(DISSIMILARITIES), "δ(x_i, x_j) between two samples' features", choices=DISSIMILARITIES
    )
    discrepancy: str = _option(
        "mse",
        _one_of(DISCREPANCIES),
        "how one reference row's student and teacher ranks are compared",
        choices=DISCREPANCIES,
    )
    teacher_ranks: str = _option(
        "soft", _one_of(TEACHER_RANKS), '"hard": exact average ranks, no gradient to the teacher', choices=TEACHER_RANKS
    )
    normalize: str = _option(
        "row_std",
        _one_of(NORMALIZATIONS),
        "per-reference scale: divide each row by its standard deviation",
        choices=NORMALIZATIONS,
    )
    reduction: str = _option(
        "mean", _one_of(REDUCTIONS), '"none": the per-reference losses, shape (end − start,)', choices=REDUCTIONS
    )
    backend: str = _option(
        "auto",
        _one_of(BACKENDS),
        '"auto": "triton" for CUDA tensors when Triton is installed, else "torch"',
        choices=BACKENDS,
    )
    rows: tuple[int, int] | None = _option(
        None,
        "None, or (start, end) with 0 <= start < end <= n",
        "compute only reference rows start <= i < end, each against the whole batch",
        agreed=False,
    )
    chunk_rows: int | None = _option(
        None,
        "None, or an int >= 1",
        "reference rows per block of the pipeline, rounded up to a multiple of 64 (None: from a memory budget)",
        agreed=False,
    )
    distributed: bool = _option(
        False,
        "False or True",
        "rank over the global batch of torch.distributed (each process its own rows)",
        agreed=False,
    )
    algorithm: str = _option(
        "auto",
        _one_of(ALGORITHMS),
        '"dense": every sigmoid, O(n³); "binned": soft ranks on a grid by FFT, O(n² + n·B log B), within '
        '1e-5; "auto": "binned" from a measured n per device on, else "dense"',
        choices=ALGORITHMS,
    )
    bins: int | None = _option(
        None,
        f'None, or an int from 2 to {MAX_BINS} (algorithm="binned" only)',
        'grid nodes per row of algorithm="binned" (None: chosen for the 1e-5 bound)',
    )

    def validated(self) -> LossOptions:
        """Return a copy with ``tau`` as float and ``rows`` as a tuple of ints.

        Raises:
            TypeError: an option of the wrong type (``tau`` not a real number, ``rows`` not a pair
                of ints, ``chunk_rows`` or ``bins`` not an int, ``distributed`` not a bool).
            ValueError: an option value outside what it accepts (the message names the option, the
                value received and what is accepted), or a combination that cannot run: ``bins``
                without algorithm="binned", algorithm="binned" with backend="reference",
                ``rows`` with ``distributed=True``.
        """
        for f in fields(self):
            if f.metadata["choices"]:
                _check_choice(f.name, getattr(self, f.name), f.metadata["choices"])
        tau = check_tau(self.tau)
        rows = _check_rows(self.rows)
        chunk = self.chunk_rows
        _check_optional_int("chunk_rows", chunk, 1, None)
        if not isinstance(self.distributed, bool):
            raise TypeError(f"distributed must be a bool; got {self.distributed!r}")
        if self.distributed and rows is not None:
            raise ValueError(
                f"rows must be None when distributed=True (each rank's rows are its own samples); got {rows!r}"
            )
        bins = self.bins
        if bins is not None:
            _check_optional_int("bins", bins, 2, MAX_BINS)
            if self.algorithm != "binned":
                raise ValueError(
                    f"bins applies only to algorithm='binned' (set it explicitly); got bins={bins!r} with "
                    f"algorithm={self.algorithm!r}"
                )
        if self.algorithm == "binned" and self.backend == "reference":
            raise ValueError(
                "algorithm='binned' runs on backend 'torch', 'triton' or 'auto'; the reference backend "
                "computes algorithm='dense' only"
            )
        return replace(
            self,
            tau=tau,
            rows=rows,
            chunk_rows=None if chunk is None else int(chunk),
            bins=None if bins is None else int(bins),
        )

    def row_range(self, n: int) -> tuple[int, int]:
        """The reference rows [start, end) computed for a batch of n samples.

        Raises:
            ValueError: ``rows`` ends beyond n.
        """
        if self.rows is None:
            return 0, n
        start, end = self.rows
        if end > n:
            raise ValueError(f"rows must satisfy end <= n = {n} (the batch size); got {self.rows!r}")
        return start, end

    def describe(self) -> str:
        """``name=value`` for every option, in declaration order (the module's repr)."""
        return ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))


def option_fields() -> tuple[Any, ...]:
    """The declared options (dataclass fields with their ``accepted``, ``doc``, ``choices`` and ``agreed`` metadata)."""
    return fields(LossOptions)


def _check_choice(name: str, value: object, accepted: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in accepted:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in accepted)}; got {value!r}")


def _check_rows(rows: object) -> tuple[int, int] | None:
    if rows is None:
        return None
    if (
        not isinstance(rows, (tuple, list))
        or len(rows) != 2
        or not all(isinstance(r, numbers.Integral) and not isinstance(r, bool) for r in rows)
    ):
        raise TypeError(f"rows must be None or a pair of ints (start, end); got {rows!r}")
    start, end = int(rows[0]), int(rows[1])
    if not 0 <= start < end:
        raise ValueError(f"rows must satisfy 0 <= start < end; got {rows!r}")
    return start, end


def check_tau(tau: object) -> float:
    """``tau`` as a float.

    Raises:
        TypeError: ``tau`` is not a real number.
        ValueError: ``tau`` is not finite and > 0.
    """
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(f"tau must be a real number > 0; got {tau!r} of type {type(tau).__name__}")
    value = float(tau)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"tau must be a finite real number > 0; got {tau!r}")
    return value


def _check_optional_int(name: str, value: object, low: int, high: int | None) -> None:
    """None or an int in [low, high]: TypeError for another type (bool included), ValueError out of range."""
    accepted = f"None or an int {'>= ' + str(low) if high is None else f'from {low} to {high}'}"
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {accepted}; got {value!r} of type {type(value).__name__}")
    if int(value) < low or (high is not None and int(value) > high):
        raise ValueError(f"{name} must be {accepted}; got {value!r}")


def check_dissimilarity(kind: object, name: str = "dissimilarity") -> str:
    """``kind`` if it is one of DISSIMILARITIES; ``name`` is the argument the caller passed it as.

    Raises:
        ValueError: any other value.
    """
    _check_choice(name, kind, DISSIMILARITIES)
    return str(kind)


def computation_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """float64 if any input is float64, else float32 (float16 and bfloat16 are computed in float32)."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def check_batch_shape(name: str, x: torch.Tensor) -> None:
    """Raise ValueError unless x has at least 2 dimensions, (n, d) or (n, ...): n samples and their features.
    A 1-D tensor is refused rather than read as (n, 1) or (1, d), which would both be guesses."""
    if x.dim() < 2:
        raise ValueError(
            f"{name} must have shape (n, d) or (n, ...): n samples and at least one feature dimension; got a "
            f"{x.dim()}-d tensor of shape {tuple(x.shape)} (for n samples of one feature pass x[:, None])"
        )


def _flattened(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, ...); got {type(x).__name__}")
    if x.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor; got layout {x.layout}")
    if x.dtype not in FLOATING_DTYPES:
        raise TypeError(f"{name} must have a floating dtype (float16, bfloat16, float32 or float64); got {x.dtype}")
    check_batch_shape(name, x)
    if x.shape[0] < 3:
        raise ValueError(f"{name} must hold n >= 3 samples (shape (n, ...)); got shape {tuple(x.shape)}")
    flat = x.reshape(x.shape[0], -1)
    if flat.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature per sample; got shape {tuple(x.shape)}")
    return flat


def check_features(name: str, x: object) -> torch.Tensor:
    """One feature tensor (n, ...) flattened to (n, d) in its computation dtype (see ``prepare_inputs``)."""
    flat = _flattened(name, x)
    return flat.to(computation_dtype(flat.dtype))


def prepare_inputs(student: object, teacher: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (student, teacher) pair; return both as 2-D tensors of one computation dtype.

    student (n, ...) and teacher (n, ...) are flattened to (n, p) and (n, q). The computation dtype
    is float64 if either is float64, else float32. Inputs are never modified; the result may share
    memory with them (a view) when no conversion is needed.

    Raises:
        TypeError: not a dense floating tensor.
        ValueError: fewer than 3 samples, no features, different sample counts or devices.
    """
    s = _flattened("student", student)
    t = _flattened("teacher", teacher)
    if s.shape[0] != t.shape[0]:
        raise ValueError(
            "student and teacher must hold the same number of samples n; "
            f"got student with n = {s.shape[0]} and teacher with n = {t.shape[0]}"
        )
    if s.device != t.device:
        raise ValueError(
            f"student and teacher must be on the same device; got student on {s.device} and teacher on {t.device}"
        )
    dtype = computation_dtype(s.dtype, t.dtype)
    return s.to(dtype), t.to(dtype)
