"""The documentation a newcomer reads: public docstrings with their sections, help() on the module,
every file the README and docs/ cite present in the repository, and the README within its size."""

from __future__ import annotations

import inspect
import pydoc
import re
from pathlib import Path

import pytest

import pc_kernels

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PUBLIC_FUNCTIONS = [
    getattr(pc_kernels, name) for name in pc_kernels.__all__ if inspect.isfunction(getattr(pc_kernels, name))
]
# A path to a repository file, as the documents cite them: a relative link target, or `code` naming a file.
LINK = re.compile(r"\]\(((?!https?:|#|mailto:)[^)#\s]+)")
CODE_PATH = re.compile(r"`((?:pc_kernels|docs|benchmarks|tests|examples|\.ci)/[\w./-]*\w)`")


@pytest.mark.parametrize("function", PUBLIC_FUNCTIONS, ids=lambda f: f.__name__)
def test_every_public_function_documents_its_arguments_result_and_errors(function):
    doc = inspect.getdoc(function) or ""
    parameters = [p for p in inspect.signature(function).parameters.values() if p.name not in ("self",)]
    if parameters:
        assert "Args:" in doc, function.__name__
        for parameter in parameters:
            assert re.search(rf"\b{parameter.name}\b", doc), (function.__name__, parameter.name)
    assert "Returns:" in doc and "Raises:" in doc, function.__name__


def test_the_module_documents_arguments_shapes_example_and_errors_where_help_shows_them():
    text = pydoc.render_doc(pc_kernels.PerceptionCoherenceLoss, renderer=pydoc.plaintext)
    for section in ("Shapes:", "Example", "last_plan", "Raises:"):
        assert section in text, section
    for name in inspect.signature(pc_kernels.PerceptionCoherenceLoss.__init__).parameters:
        if name != "self":
            assert name in text, name
    forward = inspect.getdoc(pc_kernels.PerceptionCoherenceLoss.forward)
    assert forward and "student" in forward and "Raises:" in forward
    assert forward.splitlines()[0] in text  # help() shows ours, not nn.Module's stock forward text


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_file_a_document_cites_exists(document):
    text = document.read_text(encoding="utf-8")
    cited = set(LINK.findall(text)) | set(CODE_PATH.findall(text))
    missing = [path for path in sorted(cited) if not (document.parent / path).exists() and not (ROOT / path).exists()]
    assert not missing, missing


def test_no_document_cites_a_spec_outside_the_repository():
    files = [*DOCUMENTS, *ROOT.glob("pc_kernels/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("tests/*.py")]
    offenders = [
        path.relative_to(ROOT).as_posix()
        for path in files
        if path != Path(__file__) and re.search(r"SPEC\.md|shared folder", path.read_text(encoding="utf-8"))
    ]
    assert not offenders


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_bytes()) < 15 * 1024


def test_every_environment_variable_the_plan_reads_is_documented_for_users():
    plan_source = (ROOT / "pc_kernels" / "plan.py").read_text(encoding="utf-8")
    read = set(re.findall(r'"((?:PC_KERNELS|TRITON)_[A-Z_]+)"', plan_source))
    assert "PC_KERNELS_CPU_LOOPS" in read
    documented = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    assert not {name for name in read if f"`{name}" not in documented}
