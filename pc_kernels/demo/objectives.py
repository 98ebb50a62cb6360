"""The distillation objective of each method, as an ``nn.Module`` ``(student, teacher) -> loss``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .. import PerceptionCoherenceLoss
from .baselines import FitNetHint, pkt_loss, rkd_angle_loss, rkd_distance_loss, similarity_preserving_loss

PairLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_STATELESS: dict[str, PairLoss] = {
    "rkd-distance": rkd_distance_loss,
    "rkd-angle": rkd_angle_loss,
    "pkt": pkt_loss,
    "sp": similarity_preserving_loss,
}


class PairLossModule(nn.Module):
    """Wraps a parameter-free ``(student, teacher) -> scalar`` function as a module."""

    def __init__(self, function: PairLoss) -> None:
        super().__init__()
        self.function = function

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The wrapped function's loss of student (n, p) and teacher (n, q) features."""
        return self.function(student, teacher)

    def extra_repr(self) -> str:
        """The wrapped function's name, shown in the module's repr."""
        return self.function.__name__


def make_objective(method: str, student_dim: int, teacher_dim: int, *, tau: float, backend: str) -> nn.Module:
    """The loss module of ``method`` (one of config.DISTILLATION_METHODS).

    Args:
        method: "pc", "rkd-distance", "rkd-angle", "pkt", "sp" or "fitnet".
        student_dim: student embedding width p.
        teacher_dim: teacher feature width q.
        tau: perception coherence temperature (used by "pc" only).
        backend: perception coherence backend (used by "pc" only).

    Returns:
        A module mapping student (n, p) and teacher (n, q) features to a scalar loss. Only
        "fitnet" has parameters (its projector), to be optimised with the student.
    """
    if method == "pc":
        return PerceptionCoherenceLoss(tau=tau, backend=backend)
    if method == "fitnet":
        return FitNetHint(student_dim, teacher_dim)
    if method in _STATELESS:
        return PairLossModule(_STATELESS[method])
    accepted = ", ".join(["pc", "fitnet", *_STATELESS])
    raise ValueError(f"method must be one of {accepted}; got {method!r}")
