"""The quality benchmark's settings: one frozen dataclass, its defaults and their validation."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace

from ..objectives import METHODS, check_pc_options
from ..runtime import check_device
from .corpus import CORPORA

# The measures, all against the teacher's cosine neighbours on the held-out sentences (see experiment.py).
RECALL_KS = (1, 10, 50)
NDCG_K = 10
MEASURES = (*(f"recall_at_{k}" for k in RECALL_KS), f"ndcg_at_{NDCG_K}", "spearman")
# The perception coherence options of the default run: cosine matches the teacher's unit-norm geometry,
# and the binned algorithm keeps large batches affordable; the other options are the library's defaults.
# The recommended settings for a sentence-encoder teacher (docs/quality.md, docs/why_pc_trails.md).
DEFAULT_PC_OPTIONS = {"dissimilarity": "cosine", "discrepancy": "spearman"}


@dataclass(frozen=True)
class QualityConfig:
    """Every setting of one benchmark run.

    Attributes:
        corpus: "fortunes" (default) or "python-docs" (see corpus.py).
        sentences: how many sentences of the corpus are used, drawn at random with a fixed seed
            (``None``: all of them).
        validation: sentences held out to choose each method's learning rate.
        test: sentences held out for the reported measures.
        methods: distillation methods, a subset of ``objectives.METHODS`` (default: all).
        widths: student embedding widths d (default 8 and 32).
        seeds: student seeds per method and width (``seed`` … ``seed + seeds − 1``).
        seed: base seed; the learning rate is chosen with this seed.
        epochs: passes over the training sentences per student.
        batch_size: sentences per step.
        lr_grid: learning rates tried for every method and width; the one with the best validation
            ``select_by`` is used for every seed.
        method_lr: method → a fixed learning rate, used instead of the ``lr_grid`` search for that method
            at every width (its validation measures are still reported); the keys are methods of the run
            (default: none).
        select_by: the measure (one of ``MEASURES``) that chooses the learning rate.
        pc_options: keyword arguments of ``PerceptionCoherenceLoss`` for "pc".
        device: torch device of the students.
        threads: CPU threads for torch during the run (default 1: on a busy 2-core machine two threads
            measured 3 to 9 times slower per step than one; ``None``: torch's own setting).
        cache_dir: folder of the unpacked teacher and its cached embeddings (``None``: the default).
        output: folder of report.md and report.json.
        progress: show progress bars.
    """

    corpus: str = "fortunes"
    sentences: int | None = 8000
    validation: int = 1000
    test: int = 1500
    methods: tuple[str, ...] = METHODS
    widths: tuple[int, ...] = (8, 32)
    seeds: int = 3
    seed: int = 0
    epochs: int = 6
    batch_size: int = 256
    # Reaches 0.1, where perception coherence and InfoNCE train best; the baselines' best lie inside it.
    lr_grid: tuple[float, ...] = (1e-2, 3e-2, 1e-1)
    method_lr: dict[str, float] = field(default_factory=dict)
    select_by: str = "recall_at_10"
    pc_options: dict[str, object] = field(default_factory=lambda: dict(DEFAULT_PC_OPTIONS))
    device: str = "cpu"
    threads: int | None = 1
    cache_dir: str | None = None
    output: str = "quality_output"
    progress: bool = True

    def lr_candidates(self, method: str) -> tuple[float, ...]:
        """The learning rates tried for ``method``: its ``method_lr`` alone, else ``lr_grid``."""
        return (self.method_lr[method],) if method in self.method_lr else self.lr_grid

    def validated(self) -> QualityConfig:
        """Return a checked copy; raise ``ValueError`` naming the setting on a bad value."""
        if self.corpus not in CORPORA:
            raise ValueError(f"corpus must be one of {', '.join(CORPORA)}; got {self.corpus!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must be distinct names among {', '.join(METHODS)}; got {list(self.methods)!r}")
        for name in ("validation", "test", "seeds", "epochs"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an int >= 1; got {getattr(self, name)!r}")
        if not all(_is_int(w) and w >= 1 for w in self.widths) or len(set(self.widths)) != len(self.widths):
            raise ValueError(f"widths must be distinct ints >= 1; got {list(self.widths)!r}")
        if self.sentences is not None and (not _is_int(self.sentences) or self.sentences < 1):
            raise ValueError(f"sentences must be None or an int >= 1; got {self.sentences!r}")
        if not _is_int(self.batch_size) or self.batch_size < 3:
            raise ValueError(f"batch_size must be an int >= 3; got {self.batch_size!r}")
        if not self.lr_grid or not all(isinstance(lr, numbers.Real) and lr > 0 for lr in self.lr_grid):
            raise ValueError(f"lr_grid must be numbers > 0; got {list(self.lr_grid)!r}")
        if not all(m in self.methods and isinstance(lr, numbers.Real) and lr > 0 for m, lr in self.method_lr.items()):
            raise ValueError(
                f"method_lr must map methods of the run ({', '.join(self.methods)}) to numbers > 0; "
                f"got {dict(self.method_lr)!r}"
            )
        if self.select_by not in MEASURES:
            raise ValueError(f"select_by must be one of {', '.join(MEASURES)}; got {self.select_by!r}")
        device = check_device(self.device)
        check_pc_options(self.pc_options, device)
        return replace(
            self,
            methods=tuple(self.methods),
            widths=tuple(self.widths),
            lr_grid=tuple(float(lr) for lr in self.lr_grid),
            method_lr={m: float(lr) for m, lr in self.method_lr.items()},
            pc_options=dict(self.pc_options),
            device=str(device),
        )


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
