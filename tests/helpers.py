"""Small shared helpers for the tests: option grids and backends usable on this machine."""

from __future__ import annotations

import itertools

import torch

import pc_kernels

DISSIMILARITIES = ("euclidean", "sqeuclidean", "cosine")
DISCREPANCIES = ("mse", "spearman")
TEACHER_RANKS = ("soft", "hard")
NORMALIZATIONS = ("row_std", "none")
REDUCTIONS = ("mean", "sum", "none")

# Every combination of the options that change the mathematics (reduction excluded).
OPTION_GRID = [
    dict(dissimilarity=d, discrepancy=c, teacher_ranks=t, normalize=z)
    for d, c, t, z in itertools.product(DISSIMILARITIES, DISCREPANCIES, TEACHER_RANKS, NORMALIZATIONS)
]


def option_id(options: dict) -> str:
    return "-".join(str(v) for v in options.values())


def cpu_backends() -> list[str]:
    """Backends that run on CPU tensors here (triton only under the interpreter)."""
    return pc_kernels.available_backends("cpu")


def random_features(n: int, d: int, *, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64).to(dtype)
