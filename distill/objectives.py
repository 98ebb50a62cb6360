"""The distillation objective of each method, as an ``nn.Module`` ``(student, teacher) -> loss``.

Perception coherence ("pc") takes any keyword of ``pc_kernels.PerceptionCoherenceLoss`` as an option
(``parse_pc_options`` reads them from a command line's ``key=value,...`` text), so that every option of
the loss, present or future, can be benchmarked without a change here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from pc_kernels import PerceptionCoherenceLoss

from .losses import (
    FitNetHint,
    InfoNCEProjection,
    pkt_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    similarity_preserving_loss,
)

PairLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Values are checked by the loss itself (check_pc_options), so any value type may pass here.
PCOptions = Mapping[str, Any]

PC = "pc"
_STATELESS: dict[str, PairLoss] = {
    "rkd-distance": rkd_distance_loss,
    "rkd-angle": rkd_angle_loss,
    "pkt": pkt_loss,
    "sp": similarity_preserving_loss,
}
_PROJECTED: dict[str, type[nn.Module]] = {"fitnet": FitNetHint, "infonce": InfoNCEProjection}
# Every method a harness can train, ours first.
METHODS = (PC, *_STATELESS, *_PROJECTED)


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


def make_objective(method: str, student_dim: int, teacher_dim: int, pc_options: PCOptions) -> nn.Module:
    """The loss module of ``method`` (one of ``METHODS``).

    Args:
        method: "pc", "rkd-distance", "rkd-angle", "pkt", "sp", "fitnet" or "infonce".
        student_dim: student embedding width p.
        teacher_dim: teacher feature width q.
        pc_options: keyword arguments of ``PerceptionCoherenceLoss`` (used by "pc" only).

    Returns:
        A module mapping student (n, p) and teacher (n, q) features to a scalar loss. Only "fitnet"
        and "infonce" have parameters (their projector), to be optimised with the student.
    """
    if method == PC:
        return PerceptionCoherenceLoss(**pc_options)
    if method in _PROJECTED:
        return _PROJECTED[method](student_dim, teacher_dim)
    if method in _STATELESS:
        return PairLossModule(_STATELESS[method])
    raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")


def _value(text: str) -> object:
    """An option value: an int, a float, None, True or False when it reads as one, else the text."""
    words: dict[str, object] = {"none": None, "true": True, "false": False}
    if text.lower() in words:
        return words[text.lower()]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_pc_options(text: str) -> dict[str, object]:
    """``"key=value,key=value"`` → keyword arguments of ``PerceptionCoherenceLoss`` (empty text → {}).

    Values are read as int, float, None/True/False (any case) where they can be, else kept as text.
    The names and values are checked by ``check_pc_options``, not here.

    Raises:
        ValueError: an item is not ``key=value`` or a key repeats.
    """
    options: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier() or key in options:
            raise ValueError(f"pc options must be distinct key=value items separated by commas; got {text!r}")
        options[key] = _value(value.strip())
    return options


def check_pc_options(options: PCOptions, device: torch.device) -> None:
    """Raise ``ValueError`` naming the options unless the loss accepts them and runs on ``device``:
    builds the loss and evaluates it once on a small random batch there."""
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 2, generator=generator), torch.randn(8, 3, generator=generator)
    try:
        PerceptionCoherenceLoss(**options)(student.to(device), teacher.to(device))
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"pc options {_as_text(options)!r} are not accepted: {error}") from None


def _as_text(options: PCOptions) -> str:
    return ",".join(f"{key}={value}" for key, value in options.items())


def describe_pc_options(options: PCOptions) -> str:
    """The options as ``key=value`` text, in the order given ("library defaults" when empty)."""
    return _as_text(options) or "library defaults"
