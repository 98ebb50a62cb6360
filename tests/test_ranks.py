"""Soft and hard ranks on every usable path: hard ranks are scipy's average ranks; soft ranks tend to
them as τ → 0."""

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

import pc_kernels
from helpers import DEVICE, random_features, usable_paths


def scipy_hard_ranks(d: np.ndarray) -> np.ndarray:
    """(average 1-based rank of D_ij among row i's n−1 candidates − 1) / (n − 2), zero diagonal."""
    n = d.shape[0]
    r = np.zeros_like(d)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        r[i, others] = (rankdata(d[i, others], method="average") - 1.0) / (n - 2)
    return r


@pytest.fixture(params=usable_paths(), ids=str)
def path(request):
    return request.param


def features(n: int, d: int, *, seed: int) -> torch.Tensor:
    return random_features(n, d, seed=seed).to(DEVICE)


@pytest.mark.parametrize("normalize", ["row_std", "none"])
@pytest.mark.parametrize("kind", ["euclidean", "sqeuclidean", "cosine"])
def test_hard_ranks_equal_scipy_average_ranks(path, kind, normalize):
    x = features(11, 4, seed=21)
    hard = pc_kernels.soft_ranks(x, dissimilarity=kind, normalize=normalize, hard=True, **path.options)
    d = pc_kernels.pairwise_dissimilarity(x, kind, backend="reference").cpu().numpy()
    np.testing.assert_allclose(hard.cpu().numpy(), scipy_hard_ranks(d), atol=1e-12)


def test_hard_ranks_average_ties(path):
    # Points on an integer grid: many squared distances are exactly equal.
    x = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1], [2, 0], [0, 2], [2, 2]], dtype=torch.float64, device=DEVICE)
    hard = pc_kernels.soft_ranks(x, dissimilarity="sqeuclidean", normalize="none", hard=True, **path.options)
    d = pc_kernels.pairwise_dissimilarity(x, "sqeuclidean", backend="reference").cpu().numpy()
    expected = scipy_hard_ranks(d)
    assert len(np.unique(expected)) < expected.size - 7  # the data really has ties
    np.testing.assert_allclose(hard.cpu().numpy(), expected, atol=1e-12)


def test_soft_ranks_tend_to_hard_ranks(path):
    x = features(12, 3, seed=22)
    d = pc_kernels.pairwise_dissimilarity(x, backend="reference").cpu().numpy()
    s = np.array([row / row[np.arange(12) != i].std() for i, row in enumerate(d)])
    gaps = [np.diff(np.sort(s[i, np.arange(12) != i])).min() for i in range(12)]
    assert min(gaps) > 1e-4  # distinct distances, so the limit is the hard rank
    expected = scipy_hard_ranks(d)
    errors = [
        np.abs(pc_kernels.soft_ranks(x, tau=tau, **path.options).cpu().numpy() - expected).max()
        for tau in (1.0, 0.1, 1e-2, 1e-3, 1e-4, 1e-6)
    ]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False) if a > 1e-12)
    assert errors[-1] < 1e-12


def test_soft_ranks_lie_in_the_open_unit_interval_with_zero_diagonal(path):
    x = features(9, 5, seed=23)
    r = pc_kernels.soft_ranks(x, tau=0.3, **path.options)
    off = ~torch.eye(9, dtype=torch.bool, device=DEVICE)
    assert torch.all(r[off] > 0) and torch.all(r[off] < 1)
    assert torch.all(r.diagonal() == 0)
    # Each row's ranks sum to (n − 1)/2: every ordered pair (j, k) contributes σ(z) + σ(−z) = 1 (binned:
    # the grid's interpolated kernel is odd too, so the sums hold up to rounding).
    torch.testing.assert_close(
        r.sum(dim=1), torch.full((9,), 4.0, dtype=torch.float64, device=DEVICE), rtol=0, atol=1e-12
    )
