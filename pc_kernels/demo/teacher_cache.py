"""The teacher cache: a trained teacher's weights in a file named by a hash of its settings.

The key holds everything the trained weights depend on (data, architecture, epochs, seed,
optimiser settings, device type), so a rerun with the same settings loads the file instead
of training, and a change of any of them trains (and caches) a new teacher.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .data import Split
from .models import TEACHER_FEATURES, TEACHER_HIDDEN, Teacher
from .train import TEACHER_BATCH_SIZE, TEACHER_LR, train_teacher

# Bump when the teacher's training code changes meaning, so old files are not reused.
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pc_kernels``, else ``~/.cache/pc_kernels``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pc_kernels"


def teacher_cache_key(split: Split, *, epochs: int, seed: int, device: torch.device) -> str:
    """A hex digest of every setting the teacher's weights depend on."""
    settings = {
        "format": CACHE_FORMAT,
        "data": [split.name, split.fingerprint()],
        "architecture": [split.train_x.shape[1], *TEACHER_HIDDEN, TEACHER_FEATURES, split.num_classes],
        "epochs": epochs,
        "seed": seed,
        "optimizer": ["adam", TEACHER_LR, TEACHER_BATCH_SIZE],
        "device": device.type,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def load_or_train_teacher(
    split: Split, *, epochs: int, seed: int, device: torch.device, cache_dir: Path, progress: bool
) -> tuple[Teacher, Path, bool]:
    """The teacher for these settings, from ``cache_dir`` if present, else trained and saved there.

    Args:
        split: the data, on the CPU (it is moved to ``device`` for training).
        epochs, seed: the teacher's training settings (see ``train.train_teacher``).
        device: where the teacher is trained and returned.
        cache_dir: folder of the cache files (created if missing).
        progress: show a progress bar while training.

    Returns:
        (teacher in eval mode on ``device``, its cache file, whether it was loaded from the cache).
    """
    path = Path(cache_dir) / f"teacher-{teacher_cache_key(split, epochs=epochs, seed=seed, device=device)}.pt"
    teacher = Teacher(split.train_x.shape[1], split.num_classes).to(device)
    if path.is_file():
        teacher.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        return teacher.eval(), path, True
    teacher = train_teacher(
        split.train_x.to(device),
        split.train_y.to(device),
        split.num_classes,
        epochs=epochs,
        seed=seed,
        progress=progress,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    torch.save(teacher.state_dict(), partial)
    partial.replace(path)
    return teacher, path, False
