"""SPEC.md properties 4-6 for every backend that runs on CPU tensors here."""

import pytest
import torch

import pc_kernels
from helpers import DISSIMILARITIES, cpu_backends, random_features


@pytest.fixture(params=cpu_backends())
def backend(request):
    return request.param


def loss(student, teacher, backend, **options):
    return pc_kernels.perception_coherence_loss(student, teacher, backend=backend, **options)


@pytest.mark.parametrize("kind", DISSIMILARITIES)
@pytest.mark.parametrize("scale", [1e-2, 7.5, 300.0])
def test_row_std_makes_the_loss_scale_invariant(backend, kind, scale):
    x, y = random_features(9, 4, seed=31), random_features(9, 6, seed=32)
    base = loss(x, y, backend, dissimilarity=kind)
    # Exact up to the 1e-12 added to the row scale, relative to a scale as small as 1e-4 here.
    torch.testing.assert_close(loss(scale * x, y, backend, dissimilarity=kind), base, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(loss(x, scale * y, backend, dissimilarity=kind), base, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("kind", DISSIMILARITIES)
def test_rotating_the_features_leaves_the_loss_unchanged(backend, kind):
    x, y = random_features(9, 4, seed=33), random_features(9, 6, seed=34)
    q, _ = torch.linalg.qr(random_features(4, 4, seed=35))
    torch.testing.assert_close(
        loss(x @ q, y, backend, dissimilarity=kind), loss(x, y, backend, dissimilarity=kind), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("discrepancy", ["mse", "spearman"])
def test_permuting_the_batch_leaves_the_mean_loss_unchanged(backend, discrepancy):
    x, y = random_features(10, 4, seed=36), random_features(10, 5, seed=37)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(38))
    per_row = loss(x, y, backend, discrepancy=discrepancy, reduction="none")
    permuted = loss(x[perm], y[perm], backend, discrepancy=discrepancy, reduction="none")
    torch.testing.assert_close(permuted, per_row[perm], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(permuted.mean(), per_row.mean(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("discrepancy", ["mse", "spearman"])
@pytest.mark.parametrize("kind", DISSIMILARITIES)
def test_identical_features_give_zero_loss(backend, kind, discrepancy):
    x = random_features(8, 5, seed=39)
    value = loss(x, x.clone(), backend, dissimilarity=kind, discrepancy=discrepancy, reduction="none")
    # Spearman's 1e-12 under the square root leaves 1 − ρ of order 1e-12 / var(R)².
    torch.testing.assert_close(value, torch.zeros(8, dtype=torch.float64), rtol=0, atol=1e-9)


def test_mse_stays_in_the_unit_interval(backend):
    x = random_features(10, 3, seed=40)
    d = pc_kernels.pairwise_dissimilarity(x, backend="reference")
    # A teacher whose ranks invert the student's: large loss, still at most 1.
    for teacher_ranks, tau in [("hard", 1e-3), ("soft", 1e-3), ("soft", 10.0)]:
        worst = loss(x, -x, backend, tau=tau, teacher_ranks=teacher_ranks, reduction="none")
        assert torch.all(worst >= 0) and torch.all(worst <= 1)
    values = loss(x, random_features(10, 3, seed=41), backend, reduction="none")
    assert torch.all(values >= 0) and torch.all(values <= 1)
    assert d.shape == (10, 10)


def _finite_loss_and_grads(student, teacher, backend, **options):
    s = student.detach().clone().requires_grad_()
    t = teacher.detach().clone().requires_grad_()
    value = loss(s, t, backend, **options)
    value.backward()
    return bool(torch.isfinite(value).all() and torch.isfinite(s.grad).all() and torch.isfinite(t.grad).all())


@pytest.mark.parametrize("kind", DISSIMILARITIES)
@pytest.mark.parametrize("discrepancy", ["mse", "spearman"])
def test_duplicate_rows_give_finite_loss_and_gradients(backend, kind, discrepancy):
    x = random_features(8, 3, seed=42)
    x[3] = x[1]
    x[5] = x[1]
    y = random_features(8, 4, seed=43)
    y[2] = y[6]
    assert _finite_loss_and_grads(x, y, backend, dissimilarity=kind, discrepancy=discrepancy)


@pytest.mark.parametrize("normalize", ["row_std", "none"])
def test_all_identical_rows_give_finite_loss_and_gradients(backend, normalize):
    x = torch.ones(6, 3, dtype=torch.float64)
    assert _finite_loss_and_grads(x, random_features(6, 2, seed=44), backend, normalize=normalize)


@pytest.mark.parametrize("discrepancy", ["mse", "spearman"])
def test_tiny_tau_and_large_norms_give_finite_values(backend, discrepancy):
    x, y = random_features(9, 4, seed=45), random_features(9, 4, seed=46)
    assert _finite_loss_and_grads(x, y, backend, tau=1e-4, discrepancy=discrepancy)
    assert _finite_loss_and_grads(1e4 * x, 1e4 * y, backend, discrepancy=discrepancy, normalize="none")
    assert _finite_loss_and_grads(1e4 * x, 1e4 * y, backend, tau=1e-4, discrepancy=discrepancy)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(backend, dtype):
    x, y = random_features(9, 4, seed=47, dtype=dtype), random_features(9, 5, seed=48, dtype=dtype)
    s = x.clone().requires_grad_()
    value = loss(s, y, backend)
    value.backward()
    assert value.dtype == torch.float32 and s.grad.dtype == dtype
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()
    exact = loss(x.double(), y.double(), "reference")
    torch.testing.assert_close(value.double(), exact, rtol=1e-4, atol=1e-5)


def test_loss_dtype_follows_the_inputs(backend):
    x32, y32 = random_features(7, 3, seed=49, dtype=torch.float32), random_features(7, 3, seed=50, dtype=torch.float32)
    assert loss(x32, y32, backend).dtype == torch.float32
    assert loss(x32, y32.double(), backend).dtype == torch.float64


def test_inputs_are_flattened_and_never_modified(backend):
    images = random_features(6, 12, seed=51).reshape(6, 3, 2, 2)
    teacher = random_features(6, 8, seed=52).T.contiguous().T  # a transposed (non-contiguous) view
    assert not teacher.is_contiguous()
    before = (images.clone(), teacher.clone())
    value = loss(images, teacher, backend)
    torch.testing.assert_close(value, loss(images.reshape(6, -1), teacher.contiguous(), backend))
    assert torch.equal(images, before[0]) and torch.equal(teacher, before[1])


def test_non_contiguous_slices_match_contiguous_copies(backend):
    big = random_features(12, 9, seed=53)
    s = big[::2, 1::2]
    t = big[1::2, ::3]
    assert not s.is_contiguous()
    torch.testing.assert_close(loss(s, t, backend), loss(s.contiguous(), t.contiguous(), backend))


def test_stride_zero_upstream_gradient(backend):
    # loss(...).sum() with reduction="none" sends an expanded (stride 0) gradient to the backend.
    x = random_features(7, 3, seed=54).requires_grad_()
    y = random_features(7, 3, seed=55)
    loss(x, y, backend, reduction="none").sum().backward()
    grad_none = x.grad.clone()
    x.grad = None
    loss(x, y, backend, reduction="sum").backward()
    torch.testing.assert_close(grad_none, x.grad)
