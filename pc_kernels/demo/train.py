"""The training loops: the teacher with labels, and a student from the teacher's features only."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .models import Teacher, student
from .objectives import make_objective

TEACHER_LR = 1e-3
TEACHER_BATCH_SIZE = 64


def _batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """One epoch of shuffled index batches of exactly ``batch_size`` (the last partial one is dropped)."""
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size].to(device) for i in range(0, n - batch_size + 1, batch_size)]


def train_teacher(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, *, epochs: int, seed: int, progress: bool
) -> Teacher:
    """Train a ``Teacher`` with cross-entropy on inputs x (n, d) and labels y (n,).

    Adam (lr 1e-3), batches of 64, ``epochs`` passes; deterministic for a given ``seed``.
    Returns the model in eval mode on x's device.
    """
    torch.manual_seed(seed)
    model = Teacher(x.shape[1], num_classes).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=TEACHER_LR)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(epochs), desc="teacher (labels)", unit="epoch", disable=not progress, leave=False):
        for index in _batches(x.shape[0], TEACHER_BATCH_SIZE, generator, x.device):
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


@dataclass(frozen=True)
class StudentRun:
    """A distilled student and what its training cost.

    Attributes:
        model: the student, in eval mode.
        seconds_per_step: median wall time of one step (forward, loss, backward, Adam update).
        steps: optimiser steps taken.
        final_loss: mean objective over the last epoch.
    """

    model: nn.Module
    seconds_per_step: float
    steps: int
    final_loss: float


def untrained_student(in_features: int, width: int, seed: int, device: torch.device) -> nn.Module:
    """The student every method starts from for this ``seed``: its random initialisation."""
    torch.manual_seed(seed)
    return student(in_features, width).to(device).eval()


def distill_student(
    method: str,
    x: torch.Tensor,
    teacher_features: torch.Tensor,
    *,
    width: int,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    tau: float,
    backend: str,
    progress: bool,
) -> StudentRun:
    """Train a student of embedding ``width`` on inputs x (n, d) to match ``teacher_features`` (n, q).

    No labels are used: each step draws a batch of ``batch_size`` samples and minimises
    ``method``'s objective between the student's embeddings and the teacher's features.
    Adam with learning rate ``lr``; the initialisation and batch order depend only on ``seed``.
    """
    model = untrained_student(x.shape[1], width, seed, x.device).train()
    objective = make_objective(method, width, teacher_features.shape[1], tau=tau, backend=backend).to(x.device)
    optimizer = torch.optim.Adam([*model.parameters(), *objective.parameters()], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    step_times: list[float] = []
    epoch_losses: list[torch.Tensor] = []
    bar = tqdm(
        total=epochs * (x.shape[0] // batch_size),
        desc=f"{method} width={width} seed={seed}",
        unit="step",
        disable=not progress,
        leave=False,
    )
    with bar:
        for _ in range(epochs):
            epoch_losses = []
            for index in _batches(x.shape[0], batch_size, generator, x.device):
                start = time.perf_counter()
                loss = objective(model(x[index]), teacher_features[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)
                step_times.append(time.perf_counter() - start)
                epoch_losses.append(loss.detach())
                bar.update()
    return StudentRun(
        model=model.eval(),
        seconds_per_step=statistics.median(step_times),
        steps=len(step_times),
        final_loss=float(torch.stack(epoch_losses).mean()),
    )
