"""docs/spec.md properties 4-6 for every computation path usable here (helpers.usable_paths()).

The binned paths meet the same tolerances: each property compares the path with itself on
transformed inputs, and its per-row results depend continuously (and, for permutations of the
candidates, not at all) on the distances.
"""

import pytest
import torch

import pc_kernels
from helpers import DEVICE, DISCREPANCIES, DISSIMILARITIES, random_features, usable_paths


@pytest.fixture(params=usable_paths(), ids=str)
def path(request):
    return request.param


def loss(student, teacher, path, **options):
    return pc_kernels.perception_coherence_loss(student, teacher, **path.options, **options)


def features(n: int, d: int, *, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return random_features(n, d, seed=seed, dtype=dtype).to(DEVICE)


@pytest.mark.parametrize("kind", DISSIMILARITIES)
@pytest.mark.parametrize("scale", [1e-2, 7.5, 300.0])
def test_row_std_makes_the_loss_scale_invariant(path, kind, scale):
    x, y = features(9, 4, seed=31), features(9, 6, seed=32)
    base = loss(x, y, path, dissimilarity=kind)
    # Exact up to the 1e-12 added to the row scale, relative to a scale as small as 1e-4 here.
    torch.testing.assert_close(loss(scale * x, y, path, dissimilarity=kind), base, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(loss(x, scale * y, path, dissimilarity=kind), base, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("kind", DISSIMILARITIES)
def test_rotating_the_features_leaves_the_loss_unchanged(path, kind):
    x, y = features(9, 4, seed=33), features(9, 6, seed=34)
    q, _ = torch.linalg.qr(features(4, 4, seed=35))
    torch.testing.assert_close(
        loss(x @ q, y, path, dissimilarity=kind), loss(x, y, path, dissimilarity=kind), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("discrepancy", DISCREPANCIES)
def test_permuting_the_batch_leaves_the_mean_loss_unchanged(path, discrepancy):
    x, y = features(10, 4, seed=36), features(10, 5, seed=37)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(38)).to(DEVICE)
    per_row = loss(x, y, path, discrepancy=discrepancy, reduction="none")
    permuted = loss(x[perm], y[perm], path, discrepancy=discrepancy, reduction="none")
    torch.testing.assert_close(permuted, per_row[perm], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(permuted.mean(), per_row.mean(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("discrepancy", DISCREPANCIES)
@pytest.mark.parametrize("kind", DISSIMILARITIES)
def test_identical_features_give_zero_loss(path, kind, discrepancy):
    x = features(8, 5, seed=39)
    value = loss(x, x.clone(), path, dissimilarity=kind, discrepancy=discrepancy, reduction="none")
    # Spearman's 1e-12 under the square root leaves 1 − ρ of order 1e-12 / var(R)².
    torch.testing.assert_close(value, torch.zeros(8, dtype=torch.float64, device=DEVICE), rtol=0, atol=1e-9)


@pytest.mark.parametrize("discrepancy", ["mse", "reciprocal_rank_mse"])
def test_squared_rank_differences_stay_in_the_unit_interval(path, discrepancy):
    x = features(10, 3, seed=40)
    d = pc_kernels.pairwise_dissimilarity(x, backend="reference")
    # A teacher whose ranks invert the student's: large loss, still at most 1.
    for teacher_ranks, tau in [("hard", 1e-3), ("soft", 1e-3), ("soft", 10.0)]:
        worst = loss(x, -x, path, tau=tau, teacher_ranks=teacher_ranks, discrepancy=discrepancy, reduction="none")
        assert torch.all(worst >= 0) and torch.all(worst <= 1)
    values = loss(x, features(10, 3, seed=41), path, discrepancy=discrepancy, reduction="none")
    assert torch.all(values >= 0) and torch.all(values <= 1)
    assert d.shape == (10, 10)


def _finite_loss_and_grads(student, teacher, path, **options):
    s = student.detach().clone().requires_grad_()
    t = teacher.detach().clone().requires_grad_()
    value = loss(s, t, path, **options)
    value.backward()
    return bool(torch.isfinite(value).all() and torch.isfinite(s.grad).all() and torch.isfinite(t.grad).all())


@pytest.mark.parametrize("kind", DISSIMILARITIES)
@pytest.mark.parametrize("discrepancy", DISCREPANCIES)
def test_duplicate_rows_give_finite_loss_and_gradients(path, kind, discrepancy):
    x = features(8, 3, seed=42)
    x[3] = x[1]
    x[5] = x[1]
    y = features(8, 4, seed=43)
    y[2] = y[6]
    assert _finite_loss_and_grads(x, y, path, dissimilarity=kind, discrepancy=discrepancy)


@pytest.mark.parametrize("normalize", ["row_std", "none"])
def test_all_identical_rows_give_finite_loss_and_gradients(path, normalize):
    x = torch.ones(6, 3, dtype=torch.float64, device=DEVICE)
    assert _finite_loss_and_grads(x, features(6, 2, seed=44), path, normalize=normalize)


@pytest.mark.parametrize("discrepancy", DISCREPANCIES)
def test_tiny_tau_and_large_norms_give_finite_values(path, discrepancy):
    x, y = features(9, 4, seed=45), features(9, 4, seed=46)
    assert _finite_loss_and_grads(x, y, path, tau=1e-4, discrepancy=discrepancy)
    assert _finite_loss_and_grads(1e4 * x, 1e4 * y, path, discrepancy=discrepancy, normalize="none")
    assert _finite_loss_and_grads(1e4 * x, 1e4 * y, path, tau=1e-4, discrepancy=discrepancy)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(path, dtype):
    x, y = features(9, 4, seed=47, dtype=dtype), features(9, 5, seed=48, dtype=dtype)
    s = x.clone().requires_grad_()
    value = loss(s, y, path)
    value.backward()
    assert value.dtype == torch.float32 and s.grad.dtype == dtype
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()
    exact = pc_kernels.perception_coherence_loss(x.double(), y.double(), backend="reference")
    torch.testing.assert_close(value.double(), exact, rtol=1e-4, atol=1e-5)


def test_loss_dtype_follows_the_inputs(path):
    x32, y32 = features(7, 3, seed=49, dtype=torch.float32), features(7, 3, seed=50, dtype=torch.float32)
    assert loss(x32, y32, path).dtype == torch.float32
    assert loss(x32, y32.double(), path).dtype == torch.float64


def test_inputs_are_flattened_and_never_modified(path):
    images = features(6, 12, seed=51).reshape(6, 3, 2, 2)
    teacher = features(6, 8, seed=52).T.contiguous().T  # a transposed (non-contiguous) view
    assert not teacher.is_contiguous()
    before = (images.clone(), teacher.clone())
    value = loss(images, teacher, path)
    torch.testing.assert_close(value, loss(images.reshape(6, -1), teacher.contiguous(), path))
    assert torch.equal(images, before[0]) and torch.equal(teacher, before[1])


def test_non_contiguous_slices_match_contiguous_copies(path):
    big = features(12, 9, seed=53)
    s = big[::2, 1::2]
    t = big[1::2, ::3]
    assert not s.is_contiguous()
    torch.testing.assert_close(loss(s, t, path), loss(s.contiguous(), t.contiguous(), path))


def test_stride_zero_upstream_gradient(path):
    # loss(...).sum() with reduction="none" sends an expanded (stride 0) gradient to the backend.
    x = features(7, 3, seed=54).requires_grad_()
    y = features(7, 3, seed=55)
    loss(x, y, path, reduction="none").sum().backward()
    grad_none = x.grad.clone()
    x.grad = None
    loss(x, y, path, reduction="sum").backward()
    torch.testing.assert_close(grad_none, x.grad)
