"""One harness run: data, teacher, the sweep of students over (width, seed, method), evaluation."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from tqdm.auto import tqdm

from ..objectives import make_objective
from ..provenance import environment, run_header
from ..runtime import default_cache_dir, run_settings
from ..tables import Summary, summarize
from ..training import Budget, TrainingRun, distillation_step, train
from .config import TEACHER, UNTRAINED, DemoConfig
from .data import Split, load_digits_split, load_image_folder_split
from .evaluate import MEASURES, evaluate_embeddings
from .models import parameter_count, student, untrained_student
from .teacher_cache import load_or_train_teacher

Embedder = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Record:
    """The evaluation of one model: a (method, width, seed) student, or the teacher (width = its dim)."""

    method: str
    width: int
    seed: int
    metrics: dict[str, float]
    seconds_per_step: float | None = None
    steps: int | None = None
    final_loss: float | None = None


class TeacherInfo(TypedDict):
    """The teacher of a run (``ExperimentResult.teacher``).

    Keys:
        cache_file: the file its weights were loaded from or saved to.
        loaded_from_cache: whether it was loaded rather than trained.
        parameters: its parameter count.
        feature_dim: the width q of the features the students distil.
        student_parameters: student width → the student's parameter count.
    """

    cache_file: str
    loaded_from_cache: bool
    parameters: int
    feature_dim: int
    student_parameters: dict[int, int]


@dataclass
class ExperimentResult:
    """Everything a report is made of.

    Attributes:
        config: the validated settings.
        command: the command line that produced the result.
        seconds: wall time of the whole run, teacher and evaluation included.
        environment: machine, commit, versions, date, threads (``provenance.environment``).
        data: dataset name and split sizes.
        teacher: the teacher's cache file, whether it was cached, its and the students' sizes.
        records: one per evaluated model.
        embeddings: (method, width) → first seed's held-out embeddings (n_test, width), for plots;
            ``(TEACHER, q)`` holds the teacher's features.
        test_labels: (n_test,) held-out labels, for plots.
        class_names: the name of each label, indexed by label, for plots.
    """

    config: DemoConfig
    command: str
    seconds: float
    environment: dict[str, object]
    data: dict[str, object]
    teacher: TeacherInfo
    records: list[Record]
    embeddings: dict[tuple[str, int], np.ndarray] = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    class_names: tuple[str, ...] = field(repr=False)

    def summary(self) -> Summary:
        """method → width → measure (and "seconds_per_step") → its ``Stats`` over seeds.

        The teacher is a single model: its std is always ``None``.
        """
        return summarize(self.records, MEASURES)

    def to_json(self) -> dict[str, object]:
        """The result as JSON-serialisable data: command, wall time, settings, environment, data, teacher,
        records, summary."""
        return {
            **run_header(self.command, self.seconds, self.config, self.environment, self.data),
            "teacher": self.teacher,
            "records": [asdict(r) for r in self.records],
            "summary": self.summary(),
        }


def load_split(config: DemoConfig) -> Split:
    """The digits split, or the user's image folder when ``config.image_folder`` is set."""
    if config.image_folder is None:
        return load_digits_split()
    return load_image_folder_split(config.image_folder, config.image_size)


@torch.no_grad()
def _embed(model: Embedder, x: torch.Tensor) -> torch.Tensor:
    return model(x).cpu()


def distill_student(
    method: str, x: torch.Tensor, teacher_features: torch.Tensor, *, width: int, seed: int, config: DemoConfig
) -> tuple[torch.nn.Module, TrainingRun]:
    """Train a student of embedding ``width`` on inputs x (n, d) to match ``teacher_features`` (n, q).

    No labels are used: each step draws a batch of ``config.batch_size`` samples and minimises ``method``'s
    objective between the student's embeddings and the teacher's features, with Adam at ``config.lr`` for
    ``config.student_epochs`` epochs; the initialisation and batch order depend only on ``seed``.
    Returns the student in eval mode and what its training cost.
    """
    model = untrained_student(x.shape[1], width, seed, x.device).train()
    objective = make_objective(method, width, teacher_features.shape[1], config.pc_options).to(x.device)
    optimizer = torch.optim.Adam([*model.parameters(), *objective.parameters()], lr=config.lr)
    run = train(
        distillation_step(lambda index: model(x[index]), objective, teacher_features, [optimizer]),
        x.shape[0],
        batch_size=config.batch_size,
        seed=seed,
        budget=Budget(epochs=config.student_epochs),
        device=x.device,
        progress=config.progress,
        desc=f"{method} width={width} seed={seed}",
    )
    return model.eval(), run


def run_experiment(config: DemoConfig, command: str) -> ExperimentResult:
    """Train the teacher (or load it from the cache) and every student of ``config``; evaluate all.

    ``command`` is the command line recorded with the result.

    Raises:
        ValueError: a setting is invalid (see ``DemoConfig.validated``) or ``batch_size``
            exceeds the training split.
    """
    started = time.perf_counter()
    config = config.validated()
    device = torch.device(config.device)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    split = load_split(config)
    n_train = split.train_x.shape[0]
    if config.batch_size > n_train:
        raise ValueError(f"batch_size must be <= the {n_train} training samples; got {config.batch_size}")
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else default_cache_dir()
    on_device = split.to(device)
    with run_settings(config.threads):
        env = environment(device)
        teacher, cache_file, cached = load_or_train_teacher(
            split,
            epochs=config.teacher_epochs,
            seed=config.seed,
            device=device,
            cache_dir=cache_dir,
            progress=config.progress,
        )
        with torch.no_grad():
            teacher_train = teacher.features(on_device.train_x)
            teacher_test = teacher.features(on_device.test_x)

        records: list[Record] = []
        embeddings: dict[tuple[str, int], np.ndarray] = {}

        def record(method: str, width: int, seed: int, model: Embedder, run: TrainingRun | None) -> None:
            test_embedding = _embed(model, on_device.test_x)
            metrics = evaluate_embeddings(
                _embed(model, on_device.train_x),
                split.train_y,
                test_embedding,
                split.test_y,
                teacher_test,
                config.eval_metric,
            )
            cost = (run.seconds_per_step, run.steps, run.final_loss) if run is not None else (None, None, None)
            records.append(Record(method, width, seed, metrics, *cost))
            embeddings.setdefault((method, width), test_embedding.numpy())

        record(TEACHER, teacher_test.shape[1], config.seed, teacher.features, None)
        seeds = range(config.seed, config.seed + config.seeds)
        jobs = tqdm(
            total=len(config.widths) * len(seeds) * len(config.methods),
            desc="students",
            unit="student",
            disable=not config.progress,
        )
        with jobs:
            for width, seed in itertools.product(config.widths, seeds):
                record(UNTRAINED, width, seed, untrained_student(split.train_x.shape[1], width, seed, device), None)
                for method in config.methods:
                    model, run = distill_student(
                        method, on_device.train_x, teacher_train, width=width, seed=seed, config=config
                    )
                    record(method, width, seed, model, run)
                    jobs.update()
    return ExperimentResult(
        config=config,
        command=command,
        seconds=time.perf_counter() - started,
        environment=env,
        data={"name": split.name, "train": n_train, "test": split.test_x.shape[0], "features": split.train_x.shape[1]},
        teacher={
            "cache_file": str(cache_file),
            "loaded_from_cache": cached,
            "parameters": parameter_count(teacher),
            "feature_dim": teacher_test.shape[1],
            "student_parameters": {w: parameter_count(student(split.train_x.shape[1], w)) for w in config.widths},
        },
        records=records,
        embeddings=embeddings,
        test_labels=split.test_y.numpy(),
        class_names=split.class_names,
    )
