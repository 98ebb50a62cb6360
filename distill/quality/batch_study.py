"""The batch-size study: does a larger batch help, at equal epochs, at equal steps, or at equal wall time?

Each method of the run trains one student per batch size and budget (``training.Budget``): the same
number of epochs (a larger batch takes fewer steps), the same number of steps (a larger batch sees more
sentences), or the same seconds of step time (what a user with a fixed time would compare). The learning
rate of batch B is ``lr × (B / 256) ** power``, the power set by the rule: 0 ("constant"), 1/2 ("sqrt",
the rule for Adam of Malladi et al., "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms",
NeurIPS 2022) or 1 ("linear", Goyal et al., "Accurate, Large Minibatch SGD", 2017). Measures are those of
the benchmark, on its test split.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..metrics import TeacherReference
from ..provenance import environment, run_header
from ..runtime import default_cache_dir, run_settings
from ..training import Budget
from .config import NDCG_K, RECALL_KS, QualityConfig
from .experiment import load_data, train_student
from .student import embed_all

LR_RULES = {"constant": 0.0, "sqrt": 0.5, "linear": 1.0}
REFERENCE_BATCH = 256
REGIMES = ("equal epochs", "equal steps", "equal wall-clock")


@dataclass(frozen=True)
class BatchStudyConfig:
    """The study's settings: the data, methods, widths, seeds and loss options of ``base``, and

    Attributes:
        batch_sizes: the batch sizes compared.
        lr: the learning rate at batch 256 of the methods without one in ``base.method_lr``; other batches
            scale a method's rate by ``lr_rule``.
        lr_rule: "constant", "sqrt" or "linear" (see the module doc).
        epochs: the budget of the equal-epochs regime.
        steps: the budget of the equal-steps regime.
        seconds: the budget of the equal-wall-clock regime, in seconds of step time per student.
    """

    base: QualityConfig
    batch_sizes: tuple[int, ...] = (256, 1024, 4096, 16384)
    lr: float = 3e-3
    lr_rule: str = "sqrt"
    epochs: int = 4
    steps: int = 30
    seconds: float = 60.0

    def learning_rate(self, method: str, batch_size: int) -> float:
        """The learning rate of ``method`` at ``batch_size``: its rate at batch 256 (``base.method_lr``, else
        ``lr``) scaled by ``lr_rule``."""
        return self.base.method_lr.get(method, self.lr) * (batch_size / REFERENCE_BATCH) ** LR_RULES[self.lr_rule]

    def budgets(self) -> dict[str, Budget]:
        """Regime name → its budget."""
        return dict(
            zip(
                REGIMES,
                (Budget(epochs=self.epochs), Budget(steps=self.steps), Budget(seconds=self.seconds)),
                strict=True,
            )
        )

    def validated(self) -> BatchStudyConfig:
        """A checked copy; raises ``ValueError`` naming the setting on a bad value."""
        if self.lr_rule not in LR_RULES:
            raise ValueError(f"lr_rule must be one of {', '.join(LR_RULES)}; got {self.lr_rule!r}")
        if not self.batch_sizes or min(self.batch_sizes) < 3 or len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise ValueError(f"batch_sizes must be distinct ints >= 3; got {list(self.batch_sizes)!r}")
        self.budgets()  # checks epochs, steps and seconds
        return BatchStudyConfig(**{**self.__dict__, "base": self.base.validated()})


@dataclass
class StudyRecord:
    """One student of the study: its regime and settings, what its training took, its test measures."""

    regime: str
    method: str
    width: int
    seed: int
    batch_size: int
    lr: float
    steps: int
    epochs: int
    seconds: float
    final_loss: float
    metrics: dict[str, float]


@dataclass
class StudyResult:
    """The study's settings, command, wall time, environment, data sizes and records."""

    config: BatchStudyConfig
    command: str
    seconds: float
    environment: dict[str, object]
    data: dict[str, Any]
    records: list[StudyRecord]

    def to_json(self) -> dict[str, object]:
        """The result as JSON-serialisable data."""
        return {
            **run_header(self.command, self.seconds, self.config, self.environment, self.data),
            "records": [asdict(r) for r in self.records],
        }


def run_batch_study(config: BatchStudyConfig, command: str) -> StudyResult:
    """Train and measure one student per (regime, width, method, batch size, seed).

    Raises:
        ValueError: a setting is invalid, or the largest batch exceeds the training sentences.
    """
    started = time.perf_counter()
    config = config.validated()
    base = config.base
    device = torch.device(base.device)
    cache_dir = Path(base.cache_dir) if base.cache_dir is not None else default_cache_dir()
    with run_settings(base.threads):
        env = environment(device)
        data = load_data(base.corpus, base.sentences, base.validation, base.test, cache_dir, base.progress)
        if max(config.batch_sizes) > len(data.train):
            raise ValueError(
                f"batch sizes must be <= the {len(data.train)} training sentences; got {max(config.batch_sizes)} "
                "(use more --sentences)"
            )
        reference = TeacherReference(data.teacher[data.test], RECALL_KS, NDCG_K, "cosine")
        records = []
        seeds = range(base.seed, base.seed + base.seeds)
        for (regime, budget), width, method, batch_size, seed in itertools.product(
            config.budgets().items(), base.widths, base.methods, config.batch_sizes, seeds
        ):
            lr = config.learning_rate(method, batch_size)
            model, run = train_student(
                method,
                data,
                width=width,
                seed=seed,
                lr=lr,
                batch_size=batch_size,
                budget=budget,
                pc_options=base.pc_options,
                device=device,
                progress=base.progress,
            )
            metrics = reference.measures(embed_all(model, data.bags, data.test))
            records.append(
                StudyRecord(
                    regime,
                    method,
                    width,
                    seed,
                    batch_size,
                    lr,
                    run.steps,
                    run.epochs,
                    run.seconds,
                    run.final_loss,
                    metrics,
                )
            )
    return StudyResult(
        config=config,
        command=command,
        seconds=time.perf_counter() - started,
        environment=env,
        data={"corpus": base.corpus, **data.sizes()},
        records=records,
    )
