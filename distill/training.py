"""The training loop shared by the harnesses: shuffled batches of indices, a budget, step timing.

A harness gives a ``step(index) -> loss`` function (forward, loss, backward, optimiser steps on the
samples ``index``); ``train`` runs it over shuffled batches until its ``Budget`` is spent and records
what the steps cost. ``distillation_step`` builds the usual step: a student embedding of the batch, a
distillation objective against the teacher's features of the same samples, any number of optimisers.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

Step = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Budget:
    """When training stops: after ``epochs`` passes, ``steps`` steps or ``seconds`` of step time,
    whichever comes first; ``None`` leaves that limit out (at least one must be set)."""

    epochs: int | None = None
    steps: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.epochs is None and self.steps is None and self.seconds is None:
            raise ValueError("a Budget needs epochs, steps or seconds; got none of them")
        for name in ("epochs", "steps", "seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"Budget {name} must be None or > 0; got {value!r}")


@dataclass(frozen=True)
class TrainingRun:
    """What a training run cost.

    Attributes:
        steps: optimiser steps taken.
        epochs: passes over the data begun (the last may be partial).
        seconds: total wall time of the steps (data shuffling excluded).
        seconds_per_step: median wall time of one step.
        final_loss: mean loss over the last epoch's steps.
    """

    steps: int
    epochs: int
    seconds: float
    seconds_per_step: float
    final_loss: float


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """One epoch of shuffled index batches of exactly ``batch_size`` (the last partial one is dropped)."""
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size].to(device) for i in range(0, n - batch_size + 1, batch_size)]


def train(
    step: Step,
    n: int,
    *,
    batch_size: int,
    seed: int,
    budget: Budget,
    device: torch.device,
    progress: bool,
    desc: str,
) -> TrainingRun:
    """Run ``step`` on shuffled batches of ``batch_size`` of the indices 0 … n − 1 until ``budget`` is spent.

    The batch order depends only on ``seed``. On CUDA each step is synchronised before it is timed.

    Raises:
        ValueError: ``batch_size`` exceeds ``n``.
    """
    if batch_size > n:
        raise ValueError(f"batch_size must be <= the {n} training samples; got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    per_epoch = n // batch_size
    total = budget.steps if budget.steps is not None else None
    if budget.epochs is not None:
        total = min(total or budget.epochs * per_epoch, budget.epochs * per_epoch)
    step_times: list[float] = []
    epoch_losses: list[torch.Tensor] = []
    epochs = 0
    with tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False) as bar:
        while not _spent(budget, epochs, len(step_times), sum(step_times)):
            epochs += 1
            epoch_losses = []
            for index in shuffled_batches(n, batch_size, generator, device):
                start = time.perf_counter()
                epoch_losses.append(step(index))
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                step_times.append(time.perf_counter() - start)
                bar.update()
                if _spent(budget, None, len(step_times), sum(step_times)):
                    break
    return TrainingRun(
        steps=len(step_times),
        epochs=epochs,
        seconds=sum(step_times),
        seconds_per_step=statistics.median(step_times),
        final_loss=float(torch.stack(epoch_losses).mean()),
    )


def _spent(budget: Budget, epochs: int | None, steps: int, seconds: float) -> bool:
    return (
        (epochs is not None and budget.epochs is not None and epochs >= budget.epochs)
        or (budget.steps is not None and steps >= budget.steps)
        or (budget.seconds is not None and seconds >= budget.seconds)
    )


def distillation_step(
    embed: Callable[[torch.Tensor], torch.Tensor],
    objective: torch.nn.Module,
    teacher_features: torch.Tensor,
    optimizers: Sequence[torch.optim.Optimizer],
) -> Step:
    """The step that distils ``embed`` into ``teacher_features``: the objective between the student's
    embeddings of the batch ``index`` and the teacher's features (n, q) of the same rows, backward, and a
    step of every optimiser. Returns the loss, detached."""

    def step(index: torch.Tensor) -> torch.Tensor:
        loss = objective(embed(index), teacher_features[index])
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        return loss.detach()

    return step
