"""The digits teacher: trained with labels, and cached as weights in a file named by a hash of its settings.

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
import torch.nn.functional as F

from ..training import Budget, train
from .data import Split
from .models import TEACHER_FEATURES, TEACHER_HIDDEN, Teacher

# Bump when the teacher's training code changes meaning, so old files are not reused.
CACHE_FORMAT = 1
TEACHER_LR = 1e-3
TEACHER_BATCH_SIZE = 64


def train_teacher(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, *, epochs: int, seed: int, progress: bool
) -> Teacher:
    """Train a ``Teacher`` with cross-entropy on inputs x (n, d) and labels y (n,).

    Adam (lr 1e-3), batches of 64, ``epochs`` passes; deterministic for a given ``seed``.
    Returns the model in eval mode on x's device.
    """
    torch.manual_seed(seed)
    model = Teacher(x.shape[1], num_classes).to(x.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=TEACHER_LR)

    def step(index: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    budget = Budget(epochs=epochs)
    train(
        step,
        x.shape[0],
        batch_size=TEACHER_BATCH_SIZE,
        seed=seed,
        budget=budget,
        device=x.device,
        progress=progress,
        desc="teacher (labels)",
    )
    return model.eval()


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
