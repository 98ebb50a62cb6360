"""Bad input is rejected with a ValueError or TypeError that names the argument (docs/spec.md property 7)."""

import pytest
import torch

import pc_kernels
from helpers import cpu_backends, random_features

X = random_features(6, 3, seed=61)
Y = random_features(6, 4, seed=62)


@pytest.mark.parametrize(
    "student, teacher, error, words",
    [
        (X[:2], Y[:2], ValueError, ["student", "n >= 3"]),
        (X, Y[:5], ValueError, ["same number of samples", "n = 6", "n = 5"]),
        (X.long(), Y, TypeError, ["student", "floating dtype", "int64"]),
        (X, Y.int(), TypeError, ["teacher", "floating dtype", "int32"]),
        (X, Y.bool(), TypeError, ["teacher", "floating dtype"]),
        (X.tolist(), Y, TypeError, ["student", "torch.Tensor", "list"]),
        (X, None, TypeError, ["teacher", "torch.Tensor"]),
        (torch.tensor(1.0), Y, ValueError, ["student", "0-d"]),
        (torch.zeros(6, 0), Y, ValueError, ["student", "at least one feature"]),
        (X, Y.to("meta"), ValueError, ["same device", "cpu", "meta"]),
        (X.to_sparse(), Y, TypeError, ["student", "dense (strided)", "sparse"]),
    ],
)
def test_bad_features_are_rejected(student, teacher, error, words):
    with pytest.raises(error) as info:
        pc_kernels.perception_coherence_loss(student, teacher)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "options, error, words",
    [
        (dict(tau=0.0), ValueError, ["tau", "> 0", "0.0"]),
        (dict(tau=-1), ValueError, ["tau", "> 0"]),
        (dict(tau=float("nan")), ValueError, ["tau", "finite"]),
        (dict(tau=float("inf")), ValueError, ["tau", "finite"]),
        (dict(tau="0.1"), TypeError, ["tau", "real number", "str"]),
        (dict(tau=True), TypeError, ["tau", "bool"]),
        (dict(dissimilarity="manhattan"), ValueError, ["dissimilarity", "'euclidean'", "'cosine'", "'manhattan'"]),
        (dict(discrepancy="kl"), ValueError, ["discrepancy", "'mse'", "'spearman'", "'kl'"]),
        (dict(teacher_ranks="exact"), ValueError, ["teacher_ranks", "'soft'", "'hard'"]),
        (dict(normalize="l2"), ValueError, ["normalize", "'row_std'", "'none'"]),
        (dict(reduction="max"), ValueError, ["reduction", "'mean'", "'sum'", "'none'"]),
        (dict(reduction=None), ValueError, ["reduction", "None"]),
        (dict(backend="cuda"), ValueError, ["backend", "'auto'", "'torch'", "'triton'", "'cuda'"]),
        (dict(rows=(3, 3)), ValueError, ["rows", "start < end"]),
        (dict(rows=(-1, 2)), ValueError, ["rows", "0 <= start"]),
        (dict(rows=5), TypeError, ["rows", "pair of ints"]),
        (dict(rows=(0.0, 2.0)), TypeError, ["rows", "pair of ints"]),
        (dict(chunk_rows=0), ValueError, ["chunk_rows", ">= 1"]),
        (dict(chunk_rows=2.5), TypeError, ["chunk_rows", "an int", "float"]),
        (dict(chunk_rows=True), TypeError, ["chunk_rows", "an int", "bool"]),
    ],
)
def test_bad_options_are_rejected_by_function_and_module(options, error, words):
    with pytest.raises(error) as info:
        pc_kernels.perception_coherence_loss(X, Y, **options)
    for word in words:
        assert word in str(info.value)
    with pytest.raises(error):
        pc_kernels.PerceptionCoherenceLoss(**options)


ENTRIES = {
    "loss": lambda x, backend: pc_kernels.perception_coherence_loss(x, Y, backend=backend),
    "loss teacher": lambda x, backend: pc_kernels.perception_coherence_loss(X, x, backend=backend),
    "module": lambda x, backend: pc_kernels.PerceptionCoherenceLoss(backend=backend)(x, Y),
    "soft_ranks": lambda x, backend: pc_kernels.soft_ranks(x, backend=backend),
    "pairwise_dissimilarity": lambda x, backend: pc_kernels.pairwise_dissimilarity(x, backend=backend),
}


@pytest.mark.parametrize("backend", ["auto", *cpu_backends()])
@pytest.mark.parametrize("entry", ENTRIES, ids=str)
def test_one_dimensional_features_are_an_error_on_every_entry(entry: str, backend: str) -> None:
    """A 1-D tensor of 6 values could be 6 samples of one feature or one sample of 6: neither is guessed."""
    with pytest.raises(ValueError, match=r"must have shape \(n, d\) or \(n, \.\.\.\).*1-d tensor of shape \(6,\)"):
        ENTRIES[entry](X[:, 0], backend)


def test_distributed_features_must_have_two_dimensions():
    from pc_kernels.distributed import _flatten

    with pytest.raises(ValueError, match=r"student must have shape .*1-d tensor of shape \(6,\)"):
        _flatten("student", X[:, 0])


def test_rows_beyond_the_batch_are_rejected():
    with pytest.raises(ValueError, match=r"rows must satisfy end <= n = 6"):
        pc_kernels.perception_coherence_loss(X, Y, rows=(2, 7))


def test_helper_functions_validate_their_arguments():
    with pytest.raises(ValueError, match="kind must be one of .*'euclidean'.*got 'hamming'"):
        pc_kernels.pairwise_dissimilarity(X, "hamming")
    with pytest.raises(TypeError, match="features must have a floating dtype"):
        pc_kernels.soft_ranks(X.long())
    with pytest.raises(ValueError, match="features must hold n >= 3"):
        pc_kernels.soft_ranks(X[:2])
    with pytest.raises(TypeError, match="hard must be a bool"):
        pc_kernels.soft_ranks(X, hard="yes")
    with pytest.raises(ValueError, match="tau must be"):
        pc_kernels.soft_ranks(X, tau=0)


def test_reference_refuses_sizes_above_its_memory_limit(monkeypatch):
    x = random_features(80, 3, seed=63)
    pc_kernels.perception_coherence_loss(x, x, backend="reference")  # within the default 4 GiB
    monkeypatch.setenv("PC_KERNELS_REFERENCE_MEMORY_LIMIT", str(2**20))
    with pytest.raises(ValueError, match=r"backend='reference' would need about .* use backend='torch'"):
        pc_kernels.perception_coherence_loss(x, x, backend="reference")
    with pytest.raises(ValueError, match=r"backend='reference' would need about"):
        pc_kernels.soft_ranks(x, backend="reference")
    pc_kernels.perception_coherence_loss(x, x, backend="torch")  # the fast paths have no such limit


@pytest.mark.parametrize("variable", ["PC_KERNELS_REFERENCE_MEMORY_LIMIT", "PC_KERNELS_TORCH_WORKSPACE_BYTES"])
@pytest.mark.parametrize("value", ["-5", "lots", "0", "1.5"])
def test_bad_environment_settings_are_rejected_by_name(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    backend = "reference" if "REFERENCE" in variable else "torch"
    with pytest.raises(ValueError, match=f"{variable} must be a positive integer"):
        pc_kernels.perception_coherence_loss(X, Y, backend=backend)


def test_triton_without_gpu_or_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="backend='triton' runs on CUDA tensors; got tensors on cpu"):
        pc_kernels.perception_coherence_loss(X, Y, backend="triton")


def test_auto_resolves_to_the_torch_backend_on_cpu():
    assert pc_kernels.resolve_backend("auto", "cpu") == "torch"
    criterion = pc_kernels.PerceptionCoherenceLoss()
    criterion(X, Y)
    assert criterion.last_backend == "torch"
    assert "tau=0.1" in repr(criterion)
