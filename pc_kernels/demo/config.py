"""The harness settings: one frozen dataclass, its defaults, a quick preset and their validation."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import available_backends
from ..options import BACKENDS, check_tau

# Distillation methods trained without labels from the teacher's features (see objectives.py).
DISTILLATION_METHODS = ("pc", "rkd-distance", "rkd-angle", "pkt", "sp", "fitnet")
# Always reported beside them: the floor (a randomly initialised student) and the ceiling.
UNTRAINED = "untrained"
TEACHER = "teacher"
EVAL_METRICS = ("euclidean", "cosine")


@dataclass(frozen=True)
class DemoConfig:
    """Every setting of one harness run.

    Attributes:
        methods: distillation methods to train, a subset of ``DISTILLATION_METHODS``
            (default: all). The untrained student and the teacher are always evaluated.
        widths: student embedding dimensions swept (default 2, 4, 8, 16).
        seeds: number of student seeds per (method, width); seeds are ``seed .. seed + seeds - 1``.
        seed: base seed; also the teacher's seed (default 0).
        student_epochs: passes over the training split per student (default 20).
        teacher_epochs: passes of the label-supervised teacher (default 30).
        batch_size: samples per student step, >= 3 and <= the training split (default 128);
            the loss of every method is computed over the whole batch.
        lr: Adam learning rate of the students (default 3e-3).
        tau: perception coherence temperature τ (default 0.1, the library default).
        backend: perception coherence backend: "auto" (default), "reference", "torch" or "triton".
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

    methods: tuple[str, ...] = DISTILLATION_METHODS
    widths: tuple[int, ...] = (2, 4, 8, 16)
    seeds: int = 3
    seed: int = 0
    student_epochs: int = 20
    teacher_epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    tau: float = 0.1
    backend: str = "auto"
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
        unknown = [m for m in methods if m not in DISTILLATION_METHODS]
        if unknown or not methods or len(set(methods)) != len(methods):
            raise ValueError(
                f"methods must be distinct names among {', '.join(DISTILLATION_METHODS)} "
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
        tau = check_tau(self.tau)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        device = check_device(self.device)
        unusable = backend_unusable(self.backend, device)
        if unusable:
            raise ValueError(f"backend {unusable}")
        if self.eval_metric not in EVAL_METRICS:
            raise ValueError(f"eval_metric must be one of {', '.join(EVAL_METRICS)}; got {self.eval_metric!r}")
        if self.image_folder is not None and not Path(self.image_folder).is_dir():
            raise ValueError(f"image_folder must be an existing folder; got {self.image_folder!r}")
        return replace(
            self,
            methods=methods,
            widths=widths,
            lr=float(self.lr),
            tau=tau,
            device=str(device),
        )


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def backend_unusable(backend: str, device: torch.device) -> str | None:
    """``None`` if the perception coherence ``backend`` can run on ``device`` here, else why not:
    the backend, the device and the backends accepted for it."""
    usable = available_backends(device)
    if backend == "auto" or backend in usable:
        return None
    why = ""
    if backend == "triton":
        why = " (triton needs a CUDA device and an installed triton: pip install triton)"
    accepted = ", ".join(repr(name) for name in ("auto", *usable))
    return f"{backend!r} cannot run on device {str(device)!r} here{why}; accepted for this device: {accepted}"


def check_device(device: str) -> torch.device:
    """The torch device named by ``device`` ("cpu", "cuda", "cuda:<index>"), checked to be usable here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>'; got {device!r}") from error
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>'; got {device!r}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but CUDA is not available here; use device 'cpu'")
        index = 0 if parsed.index is None else parsed.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        parsed = torch.device("cuda", index)
    return parsed
