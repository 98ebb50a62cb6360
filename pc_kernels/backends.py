"""Backend registry: which module computes the loss, and how "auto" picks one.

Every backend module provides the same three functions, all on validated 2-D inputs of one
computation dtype (float32 or float64):

    pairwise_dissimilarity(x, kind) -> (n, n)
    rank_matrix(x, options, hard) -> (n, n) ranks with a zero diagonal
    row_losses(student, teacher, options) -> (end - start,) per-reference losses ℓ_i

Reductions, option validation and dtype handling live above them, in ``loss.py``.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import torch

from .options import BACKENDS

# Looked up once, without importing triton (importing it is slow and must wait until
# TRITON_INTERPRET has been decided).
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_usable(device: torch.device) -> bool:
    """Whether Triton kernels can run on tensors of ``device``.

    On CUDA tensors this needs an installed triton; on CPU tensors it needs the Triton
    interpreter (TRITON_INTERPRET=1, set before triton is first imported).
    """
    if not _TRITON_INSTALLED:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """The backend names that can run on tensors of ``device`` here (besides "auto")."""
    device = torch.device(device)
    names = ["reference", "torch"]
    if triton_usable(device):
        names.append("triton")
    return names


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The backend that ``backend`` means for tensors on ``device``.

    "auto" is "triton" for CUDA tensors when Triton is installed, else "torch". Explicit
    names are returned as they are once checked to be usable on ``device``.
    """
    device = torch.device(device)
    if backend not in BACKENDS:
        choices = ", ".join(repr(b) for b in BACKENDS)
        raise ValueError(f"backend must be one of {choices}; got {backend!r}")
    if backend == "auto":
        if device.type == "cuda" and triton_usable(device):
            return "triton"
        return "torch"
    if backend == "triton" and not triton_usable(device):
        raise RuntimeError(
            f"backend='triton' is not available for tensors on {device}: it needs CUDA tensors and an "
            "installed triton (or, for CPU tensors, the Triton interpreter: TRITON_INTERPRET=1 set "
            "before triton is imported); use backend='torch' or backend='auto'"
        )
    return backend


def backend_module(name: str) -> ModuleType:
    """The module implementing a resolved backend name.

    Static imports rather than importlib, so that torch.compile can trace this call; triton is
    still imported only when the triton backend is first used.
    """
    if name == "triton":
        from . import triton_backend as module
    elif name == "torch":
        from . import torch_backend as module
    else:
        from . import reference as module
    return module
