"""The harness settings: one frozen dataclass, its defaults, a quick preset and their validation."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..metrics import METRICS
from ..objectives import METHODS, check_pc_options
from ..runtime import check_device

# Always reported beside the distillation methods: the floor (a randomly initialised student) and the ceiling.
UNTRAINED = "untrained"
TEACHER = "teacher"


@dataclass(frozen=True)
class DemoConfig:
    """Every setting of one harness run.

    Attributes:
        methods: distillation methods to train, a subset of ``objectives.METHODS``
            (default: all). The untrained student and the teacher are always evaluated.
        widths: student embedding dimensions swept (default 2, 4, 8, 16).
        seeds: number of student seeds per (method, width); seeds are ``seed .. seed + seeds - 1``.
        seed: base seed; also the teacher's seed (default 0).
        student_epochs: passes over the training split per student (default 20).
        teacher_epochs: passes of the label-supervised teacher (default 30).
        batch_size: samples per student step, >= 3 and <= the training split (default 128);
            the loss of every method is computed over the whole batch.
        lr: Adam learning rate of the students (default 3e-3).
        pc_options: keyword arguments of ``PerceptionCoherenceLoss`` for "pc" (default: none, the
            library defaults).
        device: "cpu" (default) or "cuda" / "cuda:<index>".
        image_folder: ``None`` (default: scikit-learn's bundled digits) or a local folder in
            torchvision ``ImageFolder`` layout (one sub-folder per class); needs torchvision.
        image_size: side in pixels images of ``image_folder`` are resized to (grayscale).
        eval_metric: distance used by every evaluation measure: "euclidean" (default) or "cosine".
        output: folder the report (JSON, Markdown, PNGs) is written to.
        cache_dir: folder of the cached teachers; ``None`` means ``~/.cache/pc_kernels``
            (or ``$XDG_CACHE_HOME/pc_kernels``).
        progress: show tqdm progress bars.
        threads: CPU threads torch may use during the run (default 1: the models are tiny, and
            on a busy 2-core machine one thread measured ~10x faster than two); ``None`` keeps
            torch's own setting.
    """

    methods: tuple[str, ...] = METHODS
    widths: tuple[int, ...] = (2, 4, 8, 16)
    seeds: int = 3
    seed: int = 0
    student_epochs: int = 20
    teacher_epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    pc_options: dict[str, object] = field(default_factory=dict)
    device: str = "cpu"
    image_folder: str | None = None
    image_size: int = 16
    eval_metric: str = "euclidean"
    output: str = "demo_output"
    cache_dir: str | None = None
    progress: bool = True
    threads: int | None = 1

    def quick(self) -> DemoConfig:
        """A copy reduced to a smoke run: one seed, widths 2 and 8, 5 epochs of batches of 64."""
        return replace(self, seeds=1, widths=(2, 8), student_epochs=5, teacher_epochs=10, batch_size=64)

    def validated(self) -> DemoConfig:
        """Return a checked copy (tuples, floats, canonical device); raise on bad values."""
        methods = tuple(self.methods)
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods or len(set(methods)) != len(methods):
            raise ValueError(
                f"methods must be distinct names among {', '.join(METHODS)} "
                f"({UNTRAINED!r} and {TEACHER!r} are always reported); got {list(methods)!r}"
            )
        widths = tuple(self.widths)
        if not widths or not all(_is_int(w) and w >= 1 for w in widths) or len(set(widths)) != len(widths):
            raise ValueError(f"widths must be distinct ints >= 1; got {list(widths)!r}")
        for name in ("seeds", "student_epochs", "teacher_epochs", "image_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}")
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 1):
            raise ValueError(f"threads must be None or an int >= 1; got {self.threads!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0; got {self.seed!r}")
        if not _is_int(self.batch_size) or self.batch_size < 3:
            raise ValueError(
                f"batch_size must be an int >= 3 (ranks need a reference and two candidates); got {self.batch_size!r}"
            )
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, numbers.Real)
            or not (math.isfinite(self.lr) and self.lr > 0)
        ):
            raise ValueError(f"lr must be a finite real number > 0; got {self.lr!r}")
        device = check_device(self.device)
        check_pc_options(self.pc_options, device)
        if self.eval_metric not in METRICS:
            raise ValueError(f"eval_metric must be one of {', '.join(METRICS)}; got {self.eval_metric!r}")
        if self.image_folder is not None and not Path(self.image_folder).is_dir():
            raise ValueError(f"image_folder must be an existing folder; got {self.image_folder!r}")
        return replace(
            self,
            methods=methods,
            widths=widths,
            lr=float(self.lr),
            pc_options=dict(self.pc_options),
            device=str(device),
        )


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
