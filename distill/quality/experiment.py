"""The quality benchmark: data, one student run, and the sweep over (width, method) with a learning rate
chosen on the validation split and several seeds at that rate.

Data: the corpus's sentences in a fixed random order (split seed 0), the first ``test`` held out for the
reported measures, the next ``validation`` for choosing the learning rate, the rest for training; the
teacher's embeddings of every sentence come from the cache. Every measure compares a student's cosine
neighbours among the held-out sentences with the teacher's (``metrics.TeacherReference``).
"""

from __future__ import annotations

import functools
import itertools
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..metrics import TeacherReference
from ..objectives import make_objective
from ..provenance import environment, run_header
from ..runtime import default_cache_dir, run_settings
from ..tables import Summary, summarize
from ..training import Budget, TrainingRun, distillation_step, train
from .config import MEASURES, NDCG_K, RECALL_KS, QualityConfig
from .corpus import load_corpus
from .student import BagStudent, HashedBags, embed_all
from .teacher import teacher_embeddings

SPLIT_SEED = 0
UNTRAINED = "untrained"
# The phases a student is evaluated in: trained with one rate of the grid, or with the chosen rate.
LR_SEARCH = "lr-search"
SELECTED = "selected"


@dataclass(frozen=True)
class Data:
    """The sentences of a run and their split.

    Attributes:
        corpus_size: sentences in the whole corpus.
        bags: the students' input, one bag per sentence of the run.
        teacher: (n, 384) the teacher's unit-norm embeddings of the run's sentences.
        train, validation, test: disjoint row indices into ``bags`` and ``teacher``.
        teacher_cache: the file the teacher's embeddings were read from or written to.
        cached: whether they were read from it.
    """

    corpus_size: int
    bags: HashedBags
    teacher: torch.Tensor
    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    teacher_cache: Path
    cached: bool

    def sizes(self) -> dict[str, int]:
        """Sentences in the corpus and in each split."""
        return {
            "corpus_size": self.corpus_size,
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }


def load_data(corpus: str, sentences: int | None, validation: int, test: int, cache_dir: Path, progress: bool) -> Data:
    """The corpus's sentences, the teacher's embeddings of them and the fixed split (see the module doc).

    Raises:
        ValueError: the split leaves fewer than 3 training sentences.
        MissingExtraError: a package of the quality extra is missing.
    """
    every = load_corpus(corpus)
    embeddings, cache_file, cached = teacher_embeddings(every, cache_dir, progress=progress)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(every))[:sentences]
    if len(order) - validation - test < 3:
        raise ValueError(
            f"validation ({validation}) and test ({test}) leave fewer than 3 of the {len(order)} sentences to train on"
        )
    rows = torch.arange(len(order))
    return Data(
        corpus_size=len(every),
        bags=HashedBags.of([every[i] for i in order]),
        teacher=torch.from_numpy(embeddings[order]),
        train=rows[test + validation :],
        validation=rows[test : test + validation],
        test=rows[:test],
        teacher_cache=cache_file,
        cached=cached,
    )


def train_student(
    method: str,
    data: Data,
    *,
    width: int,
    seed: int,
    lr: float,
    batch_size: int,
    budget: Budget,
    pc_options: dict[str, object],
    device: torch.device,
    progress: bool,
) -> tuple[BagStudent, TrainingRun]:
    """Distil the teacher into a ``BagStudent`` of ``width`` on the training sentences with ``method``.

    Adam (SparseAdam for the table) at ``lr``; the initialisation and batch order depend only on ``seed``.
    Returns the student in eval mode and what its training cost.
    """
    torch.manual_seed(seed)
    model = BagStudent(width).to(device).train()
    objective = make_objective(method, width, data.teacher.shape[1], pc_options).to(device)
    rows = data.train.to(device)
    step = distillation_step(
        lambda index: model(*data.bags.batch(rows[index])),
        objective,
        data.teacher[data.train].to(device),
        model.optimizers(list(objective.parameters()), lr),
    )
    run = train(
        step,
        len(rows),
        batch_size=batch_size,
        seed=seed,
        budget=budget,
        device=device,
        progress=progress,
        desc=f"{method} d={width} seed={seed} lr={lr:g} batch={batch_size}",
    )
    return model.eval(), run


@dataclass
class Record:
    """One evaluated student: its settings, its measures on one split, and its training cost."""

    method: str
    width: int
    seed: int
    lr: float | None
    phase: str
    split: str
    metrics: dict[str, float]
    steps: int | None = None
    seconds: float | None = None
    seconds_per_step: float | None = None
    final_loss: float | None = None


@dataclass
class QualityResult:
    """Everything a report is made of: the command and its wall time, the settings, the environment, the
    data sizes, the chosen learning rates and every record."""

    config: QualityConfig
    command: str
    seconds: float
    environment: dict[str, object]
    data: dict[str, Any]
    selected_lr: dict[str, dict[int, float]]
    records: list[Record]

    def summary(self) -> Summary:
        """method → width → measure (and "seconds_per_step") → ``Stats`` over the seeds at the chosen
        learning rate, on the test split (the untrained student: over the same seeds)."""
        selected = [r for r in self.records if r.split == "test" and r.phase == SELECTED]
        return summarize(selected, MEASURES)

    def lr_search(self) -> dict[str, dict[int, dict[float, float]]]:
        """method → width → learning rate → the validation measure that chose among them."""
        out: dict[str, dict[int, dict[float, float]]] = {}
        for r in self.records:
            if r.phase == LR_SEARCH and r.split == "validation" and r.lr is not None:
                out.setdefault(r.method, {}).setdefault(r.width, {})[r.lr] = r.metrics[self.config.select_by]
        return out

    def to_json(self) -> dict[str, object]:
        """The result as JSON-serialisable data."""
        return {
            **run_header(self.command, self.seconds, self.config, self.environment, self.data),
            "selected_lr": self.selected_lr,
            "lr_search": self.lr_search(),
            "records": [asdict(r) for r in self.records],
            "summary": self.summary(),
        }


def run_benchmark(config: QualityConfig, command: str) -> QualityResult:
    """Choose each method's learning rate at each width on the validation split (seed ``config.seed``),
    then train ``config.seeds`` seeds at that rate and measure them on the test split.

    The run at the base seed and the chosen rate is the one trained during the search (runs are
    deterministic for a seed), so ``len(lr_grid) + seeds − 1`` students are trained per method and width
    (``seeds`` for a method of ``config.method_lr``, whose one rate is the whole search).
    """
    started = time.perf_counter()
    config = config.validated()
    device = torch.device(config.device)
    cache_dir = Path(config.cache_dir) if config.cache_dir is not None else default_cache_dir()
    with run_settings(config.threads):
        env = environment(device)
        data = load_data(config.corpus, config.sentences, config.validation, config.test, cache_dir, config.progress)
        if config.batch_size > len(data.train):
            raise ValueError(f"batch_size must be <= the {len(data.train)} training sentences; got {config.batch_size}")
        references = {
            split: TeacherReference(data.teacher[rows], RECALL_KS, NDCG_K, "cosine")
            for split, rows in (("validation", data.validation), ("test", data.test))
        }
        records: list[Record] = []
        selected: dict[str, dict[int, float]] = {}
        seeds = range(config.seed, config.seed + config.seeds)
        jobs = tqdm(
            total=len(config.widths) * sum(len(config.lr_candidates(m)) + config.seeds - 1 for m in config.methods),
            desc="students",
            unit="student",
            disable=not config.progress,
        )

        def evaluate(
            model: BagStudent, method: str, width: int, seed: int, lr: float | None, phase: str, run: TrainingRun | None
        ) -> dict[str, Record]:
            out = {}
            for split, reference in references.items():
                measures = reference.measures(embed_all(model, data.bags, getattr(data, split)))
                out[split] = Record(method, width, seed, lr, phase, split, measures)
                if run is not None:
                    out[split].steps, out[split].seconds = run.steps, run.seconds
                    out[split].seconds_per_step, out[split].final_loss = run.seconds_per_step, run.final_loss
            records.extend(out.values())
            return out

        with jobs:
            for width, seed in itertools.product(config.widths, seeds):
                torch.manual_seed(seed)
                evaluate(BagStudent(width).eval(), UNTRAINED, width, seed, None, SELECTED, None)
            for width, method in itertools.product(config.widths, config.methods):
                student = functools.partial(
                    train_student,
                    method,
                    data,
                    width=width,
                    batch_size=config.batch_size,
                    budget=Budget(epochs=config.epochs),
                    pc_options=config.pc_options,
                    device=device,
                    progress=config.progress,
                )
                search: dict[float, dict[str, Record]] = {}
                candidates = config.lr_candidates(method)
                for lr in candidates:
                    model, run = student(seed=config.seed, lr=lr)
                    search[lr] = evaluate(model, method, width, config.seed, lr, LR_SEARCH, run)
                    jobs.update()
                best = max(candidates, key=lambda lr: search[lr]["validation"].metrics[config.select_by])
                selected.setdefault(method, {})[width] = best
                records.extend(Record(**{**asdict(r), "phase": SELECTED}) for r in search[best].values())
                for seed in seeds[1:]:
                    model, run = student(seed=seed, lr=best)
                    evaluate(model, method, width, seed, best, SELECTED, run)
                    jobs.update()
    return QualityResult(
        config=config,
        command=command,
        seconds=time.perf_counter() - started,
        environment=env,
        data={
            "corpus": config.corpus,
            **data.sizes(),
            "teacher": "all-MiniLM-L6-v2 (384-d, unit norm)",
            "teacher_cache": str(data.teacher_cache),
            "teacher_cached": data.cached,
        },
        selected_lr=selected,
        records=records,
    )
