"""Launch-time facts shared by the kernel launchers: interpreter or GPU, and the sigmoid flavour."""

from __future__ import annotations

import os

import torch

# Opt-in: one tanh.approx.f32 special-function op per sigmoid (CUDA, float32 only; see soft_rank.py).
FAST_SIGMOID_ENV = "PC_KERNELS_FAST_SIGMOID"


def interpreting(x: torch.Tensor) -> bool:
    """Whether kernels on ``x`` run under the Triton interpreter (CPU tensors, TRITON_INTERPRET=1)."""
    return x.device.type != "cuda"


def fast_sigmoid(x: torch.Tensor) -> bool:
    """Whether the tanh.approx sigmoid is used for ``x``: float32 CUDA tensors with PC_KERNELS_FAST_SIGMOID=1."""
    return x.device.type == "cuda" and x.dtype == torch.float32 and os.environ.get(FAST_SIGMOID_ENV) == "1"
