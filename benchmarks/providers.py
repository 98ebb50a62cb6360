"""The loss implementations a benchmark compares, and whether each can run on a device.

Providers:
    "triton"             pc_kernels.perception_coherence_loss(..., backend="triton") (CUDA only here:
                         the CPU Triton interpreter is never benchmarked)
    "triton_binned"      the same with algorithm="binned" (CUDA only, as "triton")
    "torch"              pc_kernels.perception_coherence_loss(..., backend="torch")
    "torch_binned"       the same with algorithm="binned"
    "reference"          the eager reference formula, pc_kernels.reference.row_losses
    "reference_compiled" torch.compile of that same reference formula

The first four are ours. All use the default loss options (tau=0.1, euclidean, mse, soft teacher
ranks, row_std) and the mean reduction, so every provider computes the same number: exactly for the
dense ones (O(n³)); within the binned algorithm's error bound (normalized soft ranks within 1e-5 of
the dense ones, automatic grid) for the binned ones, whose time grows about as n² instead.
"""

from __future__ import annotations

import shutil
from typing import Callable

import torch

import pc_kernels
from pc_kernels import reference
from pc_kernels.backends import available_backends
from pc_kernels.options import LossOptions, prepare_inputs

# Our providers: (backend, algorithm) of pc_kernels.perception_coherence_loss.
_OURS_CALLS = {
    "triton": ("triton", "dense"),
    "triton_binned": ("triton", "binned"),
    "torch": ("torch", "dense"),
    "torch_binned": ("torch", "binned"),
}
OURS = tuple(_OURS_CALLS)
ALTERNATIVES = ("reference", "reference_compiled")
PROVIDERS = OURS + ALTERNATIVES
# Each binned provider and the dense provider of the same backend it is compared with.
BINNED_DENSE = {"triton_binned": "triton", "torch_binned": "torch"}
DENSE_OURS = tuple(name for name in OURS if name not in BINNED_DENSE)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_OPTIONS = LossOptions().validated()


def reference_formula(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean loss of (n, p) student and (n, q) teacher features by the eager reference formulas."""
    s, t = prepare_inputs(student, teacher)
    return reference.row_losses(s, t, _OPTIONS).mean()


def check_provider(name: str) -> str:
    """Return ``name`` if it is a provider, else raise a ValueError listing the providers."""
    if name not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}; got {name!r}")
    return name


def unavailable_reason(name: str, device: str) -> str | None:
    """Why provider ``name`` cannot be benchmarked on ``device`` ("cpu" or "cuda"), or None if it can."""
    check_provider(name)
    backend = _OURS_CALLS[name][0] if name in OURS else None
    if backend == "triton":
        if device != "cuda":
            return f"{name} runs on CUDA only; the CPU interpreter is never benchmarked"
        if "triton" not in available_backends("cuda"):
            return "backend 'triton' is not usable in this installation"
        return None
    if backend == "torch" and "torch" not in available_backends(device):
        return "backend 'torch' is not part of this installation"
    if (
        name == "reference_compiled"
        and device == "cpu"
        and shutil.which("g++") is None
        and shutil.which("c++") is None
    ):
        return "torch.compile on CPU needs a C++ compiler (g++), none found"
    return None


def time_exponent(name: str) -> int:
    """How a provider's time per call grows with n, as n**exponent: 2 for the binned ones, else 3."""
    return 2 if check_provider(name) in BINNED_DENSE else 3


def loss_function(name: str, rows: tuple[int, int] | None = None) -> LossFn:
    """The (student, teacher) -> scalar loss callable of provider ``name``.

    ``rows=(start, end)`` (our providers only) computes the mean loss of reference rows
    start..end-1 only, each against the whole batch. "reference_compiled" returns a fresh
    ``torch.compile`` wrapper (static shapes): its first call compiles, which a benchmark reports
    separately from the steady-state time.
    """
    check_provider(name)
    if name in OURS:
        backend, algorithm = _OURS_CALLS[name]

        def ours(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
            return pc_kernels.perception_coherence_loss(
                student, teacher, backend=backend, algorithm=algorithm, rows=rows
            )

        return ours
    if rows is not None:
        raise ValueError(f"rows applies to our providers only ({', '.join(OURS)}); got provider {name!r}")
    if name == "reference":
        return reference_formula
    return torch.compile(reference_formula, dynamic=False)


def predicted_reference_bytes(name: str, n: int, p: int, q: int) -> int | None:
    """Working memory the eager reference formula is predicted to need (float32), else None.

    Only the eager reference has a known n³ footprint (``pc_kernels.reference.estimated_bytes``,
    two soft sides); other providers are guarded by measurement instead.
    """
    if name != "reference":
        return None
    return reference.estimated_bytes(n, max(p, q), torch.finfo(torch.float32).bits // 8, sides=2)
