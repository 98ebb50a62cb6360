"""PerceptionCoherenceDistillLoss with a real SentenceTransformer built offline and the library's trainer.

The student is a two-layer BERT of width 16 with a word-level vocabulary, written to a temporary folder
and loaded back by sentence-transformers' own Transformer module (no hub; the builder is shared with
``python -m benchmarks.sentence_transformers_cache``). The teacher embeddings are
precomputed labels of another width, as in sentence-transformers' MSELoss distillation.
"""

import importlib
import importlib.util
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.sentence_transformers_cache import WORDS, write_bert
from benchmarks.sentence_transformers_cache import load_sentence_transformer as load
from pc_kernels import PerceptionCoherenceLoss

requires_sentence_transformers = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None,
    reason='sentence-transformers is not installed (pip install "pc-kernels[sentence-transformers]")',
)


def sentences(count: int, seed: int, lengths: tuple[int, ...] = (4,)) -> list[str]:
    """``count`` sentences of vocabulary words; every length in ``lengths`` occurs (padding when several)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(lengths[i % len(lengths)])) for i in range(count)]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """Two tiny BERT checkpoints with a word-level vocabulary: the student (width 16), a teacher (width 24)."""
    pytest.importorskip("transformers")
    dirs = {name: tmp_path_factory.mktemp(name) for name in ("student", "teacher")}
    write_bert(dirs["student"], width=16, layers=2, seed=0)
    write_bert(dirs["teacher"], width=24, layers=2, seed=1)
    return dirs


def loss_class():
    from pc_kernels.sentence_transformers import PerceptionCoherenceDistillLoss

    return PerceptionCoherenceDistillLoss


def teacher_labels(model_dirs, texts: list[str]) -> torch.Tensor:
    """(n, 24) teacher embeddings, precomputed as the label column would hold them."""
    return load(model_dirs["teacher"], dropout=0.0).eval().encode(texts, convert_to_tensor=True)


def backward_and_gradients(model, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    """The parameters' gradients of ``loss`` (BERT's pooler, unused by mean pooling, gets none)."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_importing_the_package_does_not_import_sentence_transformers():
    code = "import sys, pc_kernels; sys.exit('sentence_transformers' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_missing_extra_raises_an_import_error_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.delitem(sys.modules, "pc_kernels.sentence_transformers", raising=False)
    with pytest.raises(ImportError, match=r'>= 6.2: pip install "pc-kernels\[sentence-transformers\]"'):
        importlib.import_module("pc_kernels.sentence_transformers")


@requires_sentence_transformers
def test_an_older_sentence_transformers_raises_an_import_error_naming_the_version(monkeypatch):
    import sentence_transformers

    monkeypatch.setattr(sentence_transformers, "__version__", "6.1.0")
    monkeypatch.delitem(sys.modules, "pc_kernels.sentence_transformers", raising=False)
    with pytest.raises(ImportError, match=r"needs sentence-transformers >= 6.2: .*; found 6.1.0"):
        importlib.import_module("pc_kernels.sentence_transformers")


@requires_sentence_transformers
@pytest.mark.parametrize("mini_batch_size", [None, 3])
def test_trainer_distils_a_narrower_student(model_dirs, tmp_path, mini_batch_size):
    datasets = pytest.importorskip("datasets")
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    texts = sentences(16, seed=2, lengths=(3, 4, 5))
    labels = teacher_labels(model_dirs, texts)
    train = datasets.Dataset.from_dict({"sentence": texts, "label": labels.tolist()})
    student = load(model_dirs["student"])
    loss = loss_class()(student, tau=0.1, mini_batch_size=mini_batch_size)
    features = [student.preprocess(texts)]

    def eval_loss() -> float:
        student.eval()
        with torch.no_grad():
            value = loss(features, labels).item()
        student.train()
        return value

    before_loss = eval_loss()
    # BERT's pooler is not used by mean pooling; every other parameter takes part in the loss.
    trained = {name: p for name, p in student.named_parameters() if ".pooler." not in name}
    before = {name: p.detach().clone() for name, p in trained.items()}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        max_steps=8,
        learning_rate=1e-2,
        seed=0,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    SentenceTransformerTrainer(model=student, args=args, train_dataset=train, loss=loss).train()
    assert [name for name, p in trained.items() if torch.equal(p.detach(), before[name])] == []
    assert eval_loss() < before_loss


@requires_sentence_transformers
@pytest.mark.parametrize("mini_batch_size", [1, 4])
def test_cached_gradient_equals_the_chunked_forward_with_dropout(model_dirs, mini_batch_size):
    """With dropout active, the replayed chunks draw the masks of the first pass: same loss, same gradients."""
    texts = sentences(10, seed=3)  # one length: the chunks need no padding trimmed
    labels = teacher_labels(model_dirs, texts)
    student = load(model_dirs["student"], dropout=0.1, dtype=torch.float64)
    features = student.preprocess(texts)

    torch.manual_seed(4)
    first = student(dict(features))["sentence_embedding"]
    assert not torch.equal(first, student(dict(features))["sentence_embedding"]), "dropout is not active"

    torch.manual_seed(5)
    chunks = []
    for begin in range(0, len(texts), mini_batch_size):
        chunk = {k: v[begin : begin + mini_batch_size] if torch.is_tensor(v) else v for k, v in features.items()}
        chunks.append(student(chunk)["sentence_embedding"])
    expected = PerceptionCoherenceLoss(tau=0.1)(torch.cat(chunks), labels.double())
    expected_grads = backward_and_gradients(student, expected)

    torch.manual_seed(5)
    cached = loss_class()(student, tau=0.1, mini_batch_size=mini_batch_size)([features], labels)
    cached_grads = backward_and_gradients(student, cached)

    torch.testing.assert_close(cached, expected.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(cached_grads, expected_grads, rtol=1e-10, atol=1e-14)


@requires_sentence_transformers
@pytest.mark.parametrize("layout", ["shared", "per_column"])
def test_cached_equals_uncached_over_columns(model_dirs, layout):
    """Without dropout the cached loss, its gradients and its no-grad value equal the uncached ones,
    for two input columns of padded sentences, which average the per-column losses."""
    columns = [sentences(9, seed=6, lengths=(2, 5, 3)), sentences(9, seed=7, lengths=(4, 1))]
    student = load(model_dirs["student"], dropout=0.0, dtype=torch.float64)
    features = [student.preprocess(texts) for texts in columns]
    per_column = [teacher_labels(model_dirs, texts) for texts in columns]
    labels = per_column[0] if layout == "shared" else torch.stack(per_column, dim=1)
    targets = [per_column[0], per_column[0]] if layout == "shared" else per_column

    criterion = PerceptionCoherenceLoss(tau=0.2, dissimilarity="cosine")
    embeddings = [student(dict(f))["sentence_embedding"] for f in features]
    expected = sum(criterion(e, t.double()) for e, t in zip(embeddings, targets, strict=True)) / 2
    expected_grads = backward_and_gradients(student, expected)

    for mini_batch_size in (None, 2):
        loss = loss_class()(student, tau=0.2, dissimilarity="cosine", mini_batch_size=mini_batch_size)
        with torch.no_grad():
            torch.testing.assert_close(loss(features, labels), expected.detach(), rtol=1e-10, atol=0)
        value = loss(features, labels)
        grads = backward_and_gradients(student, value)
        torch.testing.assert_close(value.detach(), expected.detach(), rtol=1e-10, atol=0)
        torch.testing.assert_close(grads, expected_grads, rtol=1e-8, atol=1e-12)


@requires_sentence_transformers
def test_matryoshka_wrapping_gives_the_same_loss_and_gradients_cached_or_not(model_dirs):
    """MatryoshkaLoss truncates the embeddings (here to 16 and 8 dimensions) before the loss; with
    mini_batch_size it wraps calculate_loss instead, and must give the uncached result."""
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

    texts = sentences(9, seed=9, lengths=(3, 5))
    student = load(model_dirs["student"], dropout=0.0, dtype=torch.float64)
    features = [student.preprocess(texts)]
    labels = teacher_labels(model_dirs, texts)
    results = []
    for mini_batch_size in (None, 3):
        inner = loss_class()(student, mini_batch_size=mini_batch_size)
        value = MatryoshkaLoss(student, inner, matryoshka_dims=[16, 8])(features, labels)
        results.append((value.detach(), backward_and_gradients(student, value)))
    (plain, plain_grads), (cached, cached_grads) = results
    torch.testing.assert_close(cached, plain, rtol=1e-10, atol=0)
    torch.testing.assert_close(cached_grads, plain_grads, rtol=1e-8, atol=1e-12)


@requires_sentence_transformers
@pytest.mark.parametrize("mini_batch_size", [None, 2])
def test_bad_labels_raise_clear_errors(model_dirs, mini_batch_size):
    texts = sentences(6, seed=8)
    student = load(model_dirs["student"])
    loss = loss_class()(student, mini_batch_size=mini_batch_size)
    features = [student.preprocess(texts)]
    labels = teacher_labels(model_dirs, texts)
    with pytest.raises(ValueError, match="labels must hold the precomputed teacher embeddings.*got None"):
        loss(features, None)
    with pytest.raises(ValueError, match=r"the batch has 6 sentences per column, labels have shape \(7, 24\)"):
        loss(features, torch.cat([labels, labels[:1]]))
    with pytest.raises(ValueError, match=r"labels must have shape \(n, q\) or \(n, columns, q\).*got shape \(6,\)"):
        loss(features, labels[:, 0])
    with pytest.raises(ValueError, match=r"one teacher embedding per input column \(1\); got shape \(6, 2, 24\)"):
        loss(features, torch.stack([labels, labels], dim=1))
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        loss(features, labels.tolist())


@requires_sentence_transformers
def test_bad_options_raise_clear_errors(model_dirs):
    student = load(model_dirs["student"])
    cls = loss_class()
    for bad in (0, -2):
        with pytest.raises(ValueError, match=rf"mini_batch_size must be None or an int >= 1; got {bad}"):
            cls(student, mini_batch_size=bad)
    for bad in (2.5, True, "4"):
        with pytest.raises(TypeError, match="mini_batch_size must be None or an int >= 1"):
            cls(student, mini_batch_size=bad)
    with pytest.raises(ValueError, match="reduction cannot be set.*reduction='sum'"):
        cls(student, reduction="sum")
    with pytest.raises(ValueError, match="rows cannot be set"):
        cls(student, rows=(0, 2))
    with pytest.raises(ValueError, match="tau must be a finite real number > 0; got -1"):
        cls(student, tau=-1)
    with pytest.raises(TypeError, match="temperature"):
        cls(student, temperature=0.1)


@requires_sentence_transformers
def test_config_and_citation_for_the_model_card(model_dirs):
    loss = loss_class()(load(model_dirs["student"]), tau=0.05, discrepancy="spearman", mini_batch_size=8)
    config = loss.get_config_dict()
    assert config["tau"] == 0.05 and config["discrepancy"] == "spearman" and config["mini_batch_size"] == 8
    assert "reduction" not in config and "rows" not in config
    assert "2505.06595" in loss.citation
    assert loss.uses_gradient_cache and not loss_class()(loss.model).uses_gradient_cache
