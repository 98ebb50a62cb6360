"""The networks: a wide, deep teacher (features + classifier head) and a small student embedder."""

from __future__ import annotations

import torch
from torch import nn

# Hidden layer widths. The teacher has ~100x the student's parameters on digits.
TEACHER_HIDDEN = (256, 256)
TEACHER_FEATURES = 64
STUDENT_HIDDEN = 32


def _mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear layers between consecutive ``sizes``, each but the last followed by ReLU."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Teacher(nn.Module):
    """An MLP trained with labels: input (n, d) → features (n, 64) → logits (n, classes).

    The features (the ReLU output of the last hidden layer) are what students distil.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_mlp((in_features, *TEACHER_HIDDEN, TEACHER_FEATURES)), nn.ReLU())
        self.head = nn.Linear(TEACHER_FEATURES, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d) inputs → (n, 64) features."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d) inputs → (n, classes) logits."""
        return self.head(self.features(x))


def student(in_features: int, width: int) -> nn.Sequential:
    """A one-hidden-layer MLP: (n, d) inputs → (n, width) embedding (32 hidden units)."""
    return _mlp((in_features, STUDENT_HIDDEN, width))


def parameter_count(model: nn.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def untrained_student(in_features: int, width: int, seed: int, device: torch.device) -> nn.Sequential:
    """The student every method starts from for this ``seed``: its random initialisation, in eval mode."""
    torch.manual_seed(seed)
    return student(in_features, width).to(device).eval()
