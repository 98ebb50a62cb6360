"""The options are declared once (pc_kernels/options.py, LossOptions): every public signature, the module's
repr, the distributed agreement check and the README's option table follow that declaration."""

from __future__ import annotations

import inspect
from dataclasses import MISSING
from pathlib import Path

import pytest

import pc_kernels
from pc_kernels import distributed
from pc_kernels.options import LossOptions, option_fields

README = Path(__file__).resolve().parent.parent / "README.md"
DECLARED = {f.name: f.default for f in option_fields()}


def _keywords(function, skip: int) -> dict[str, object]:
    parameters = list(inspect.signature(function).parameters.values())[skip:]
    return {p.name: p.default for p in parameters}


def test_every_option_has_a_default_and_its_metadata():
    for f in option_fields():
        assert f.default is not MISSING
        assert f.metadata["accepted"] and f.metadata["doc"]
        assert isinstance(f.metadata["agreed"], bool)


def test_the_functional_form_takes_exactly_the_declared_options_in_order():
    assert _keywords(pc_kernels.perception_coherence_loss, skip=2) == DECLARED
    assert list(_keywords(pc_kernels.perception_coherence_loss, skip=2)) == list(DECLARED)


def test_the_module_takes_exactly_the_declared_options_in_order():
    assert _keywords(pc_kernels.PerceptionCoherenceLoss.__init__, skip=1) == DECLARED
    assert list(_keywords(pc_kernels.PerceptionCoherenceLoss.__init__, skip=1)) == list(DECLARED)


def test_soft_ranks_takes_the_declared_options_it_uses_with_their_defaults():
    keywords = _keywords(pc_kernels.soft_ranks, skip=1)
    assert set(keywords) - {"hard"} <= set(DECLARED)
    for name, default in keywords.items():
        if name != "hard":
            assert default == DECLARED[name], name


def test_the_repr_lists_every_option_with_its_value():
    criterion = pc_kernels.PerceptionCoherenceLoss(tau=0.25, algorithm="binned", bins=64)
    text = repr(criterion)
    for name in DECLARED:
        assert f"{name}=" in text
    assert "tau=0.25" in text and "algorithm='binned'" in text and "bins=64" in text


def test_the_distributed_agreement_covers_the_declared_agreed_options():
    agreed = {f.name for f in option_fields() if f.metadata["agreed"]}
    assert set(distributed._AGREED_OPTIONS) == agreed
    assert {"rows", "chunk_rows", "distributed"}.isdisjoint(agreed)
    assert {"tau", "dissimilarity", "algorithm", "bins", "backend"} <= agreed


def _declared_table() -> list[str]:
    """The README's option table as the declaration gives it: option, default, accepted, meaning."""
    lines = ["| option | default | accepted | meaning |", "|---|---|---|---|"]
    for f in option_fields():
        default = repr(f.default).replace("'", '"')
        lines.append(f"| `{f.name}` | `{default}` | {f.metadata['accepted']} | {f.metadata['doc']} |")
    return lines


def test_the_readme_option_table_is_the_declared_one():
    lines = README.read_text(encoding="utf-8").splitlines()
    expected = _declared_table()
    start = lines.index(expected[0])
    assert lines[start : start + len(expected)] == expected
    assert not lines[start + len(expected)].startswith("|")


@pytest.mark.parametrize("name", [f.name for f in option_fields() if f.metadata["choices"]])
def test_every_declared_choice_is_validated(name):
    with pytest.raises(ValueError, match=name):
        LossOptions(**{name: "no-such-choice"}).validated()
