"""The committed results are generated, and the docs quote them faithfully.

Every report.json the harnesses committed under docs/ names its command, machine and commit, and its
report.md says the same; every number a hand-written page quotes (three-decimal measures, ms per step,
seconds of wall time) is one of the numbers of the reports that page is about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPORTS = sorted(p for p in (ROOT / "docs").rglob("report.json") if (p.parent / "report.md").is_file())
# A hand-written page → the folder whose reports it quotes.
QUOTING_PAGES = {
    ROOT / "docs" / "demo" / "NOTES.md": ROOT / "docs" / "demo",
    ROOT / "docs" / "demo.md": ROOT / "docs" / "demo",
    ROOT / "docs" / "quality.md": ROOT / "docs" / "quality",
    ROOT / "README.md": ROOT / "docs",
}


def _floats(value: object) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _floats(item)
    elif isinstance(value, list):
        for item in value:
            yield from _floats(item)


def _quotable(folder: Path) -> set[str]:
    """Every number of the reports under ``folder`` as the reports and pages write it."""
    out: set[str] = set()
    for path in folder.rglob("report.json"):
        for value in _floats(json.loads(path.read_text(encoding="utf-8"))):
            out |= {f"{value:.3f}", f"{abs(value):.3f}", f"{value * 1000:.1f} ms", f"{value:.0f} s"}
    return out


def _quoted(text: str) -> list[str]:
    """Numbers a page quotes from reports: three-decimal measures, "N.N ms", "N s" of wall time."""
    measures = re.findall(r"(?<![\d.])\d+\.\d{3}(?![\d])", text)
    return measures + re.findall(r"\b\d+\.\d ms\b", text) + re.findall(r"\b\d+ s\b(?= of wall)", text)


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_report_names_its_command_machine_and_commit(path):
    report = json.loads(path.read_text(encoding="utf-8"))
    markdown = (path.parent / "report.md").read_text(encoding="utf-8")
    assert report["command"].startswith("python -m distill.")
    environment = report["environment"]
    assert environment["hardware"] and re.fullmatch(r"[0-9a-f]{7,}", environment["commit"])
    for stated in (report["command"], environment["hardware"], environment["commit"], f"{report['seconds']:.0f} s"):
        assert stated in markdown


@pytest.mark.parametrize("page", [p for p in QUOTING_PAGES if p.is_file()], ids=lambda p: p.name)
def test_numbers_quoted_in_the_docs_are_the_reports_numbers(page):
    known = _quotable(QUOTING_PAGES[page])
    stale = [number for number in _quoted(page.read_text(encoding="utf-8")) if number not in known]
    assert not stale, f"{page.relative_to(ROOT)} quotes numbers no committed report holds: {stale}"


def test_quoted_pattern_finds_measures_and_times():
    text = "pc 0.871 ± 0.007 against 0.838 (+0.033), 12.3 ms per step, 79 s of wall time, commit 1.2.3"
    assert _quoted(text) == ["0.871", "0.007", "0.838", "0.033", "12.3 ms", "79 s"]
