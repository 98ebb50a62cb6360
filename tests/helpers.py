"""Shared helpers for the tests: option grids, the computation paths usable here, and feature makers.

A computation path is a (backend, algorithm) pair (pc_kernels/plan.py). Contract tests are
parametrized over ``usable_paths()``, so a path added to ``PATHS`` inherits every one of them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

import pc_kernels

DISSIMILARITIES = ("euclidean", "sqeuclidean", "cosine")
DISCREPANCIES = ("mse", "spearman", "reciprocal_rank_mse")
TEACHER_RANKS = ("soft", "hard")
NORMALIZATIONS = ("row_std", "none")
REDUCTIONS = ("mean", "sum", "none")

# Every combination of the options that change the mathematics (reduction excluded).
OPTION_GRID = [
    dict(dissimilarity=d, discrepancy=c, teacher_ranks=t, normalize=z)
    for d, c, t, z in itertools.product(DISSIMILARITIES, DISCREPANCIES, TEACHER_RANKS, NORMALIZATIONS)
]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Path:
    """One computation path: a backend and an algorithm."""

    backend: str
    algorithm: str

    @property
    def options(self) -> dict[str, str]:
        """The keywords that select this path."""
        return {"backend": self.backend, "algorithm": self.algorithm}

    @property
    def exact(self) -> bool:
        """Whether the path computes the formulas exactly (up to rounding): every dense path."""
        return self.algorithm == "dense"

    @property
    def interpreted(self) -> bool:
        """Whether the path runs Triton kernels under the interpreter here (slow: keep n small)."""
        return self.backend == "triton" and DEVICE == "cpu"

    def __str__(self) -> str:
        return f"{self.backend}-{self.algorithm}"


PATHS = (
    Path("reference", "dense"),
    Path("torch", "dense"),
    Path("torch", "binned"),
    Path("triton", "dense"),
    Path("triton", "binned"),
)


def usable_paths() -> list[Path]:
    """The paths that run on this machine's test device (Triton ones need CUDA or the interpreter)."""
    backends = pc_kernels.available_backends(DEVICE)
    return [path for path in PATHS if path.backend in backends]


def option_id(options: dict) -> str:
    return "-".join(str(v) for v in options.values())


def cpu_backends() -> list[str]:
    """Backends that run on CPU tensors here (triton only under the interpreter)."""
    return pc_kernels.available_backends("cpu")


def random_features(n: int, d: int, *, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64).to(dtype)


def loss_and_grads(student: torch.Tensor, teacher: torch.Tensor, weights: torch.Tensor | None = None, **options):
    """The loss and the gradients of Σ w·loss (w = 1 by default) with respect to the inputs that require grad
    (zeros for an input the loss does not reach)."""
    value = pc_kernels.perception_coherence_loss(student, teacher, **options)
    inputs = [x for x in (student, teacher) if x.requires_grad]
    total = (value * weights).sum() if weights is not None else value.sum()
    grads = torch.autograd.grad(total, inputs, allow_unused=True)
    return value.detach(), [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two tensors, flattened (no norm clamp: exact for tensors of any magnitude)."""
    a, b = a.flatten().double(), b.flatten().double()
    return (torch.dot(a, b) / (a.norm() * b.norm())).item()
