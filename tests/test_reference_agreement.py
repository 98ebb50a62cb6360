"""The reference backend agrees with the brute-force oracle (tests/oracle.py) for every option
combination; every path's dissimilarity and rank matrices agree with the oracle too."""

import pytest
import torch

import oracle
import pc_kernels
from helpers import DEVICE, OPTION_GRID, REDUCTIONS, option_id, random_features, usable_paths
from pc_kernels.stages.binned_ranks import RANK_TOLERANCE


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", OPTION_GRID, ids=option_id)
def test_reference_matches_brute_force(options, reduction):
    student = random_features(7, 3, seed=1)
    teacher = random_features(7, 5, seed=2)
    got = pc_kernels.perception_coherence_loss(
        student, teacher, tau=0.3, reduction=reduction, backend="reference", **options
    )
    expected = oracle.reduce(oracle.row_losses(student.tolist(), teacher.tolist(), tau=0.3, **options), reduction)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rows", [(0, 1), (2, 5), (6, 7), (0, 7)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_row_subset_is_the_matching_slice(rows, reduction):
    student = random_features(7, 3, seed=3)
    teacher = random_features(7, 4, seed=4)
    full = pc_kernels.perception_coherence_loss(student, teacher, reduction="none", backend="reference")
    part = pc_kernels.perception_coherence_loss(student, teacher, reduction=reduction, rows=rows, backend="reference")
    sliced = full[rows[0] : rows[1]]
    expected = {"none": sliced, "sum": sliced.sum(), "mean": sliced.mean()}[reduction]
    torch.testing.assert_close(part, expected)


@pytest.mark.parametrize("path", usable_paths(), ids=str)
@pytest.mark.parametrize("kind", ["euclidean", "sqeuclidean", "cosine"])
def test_pairwise_dissimilarity_matches_brute_force(path, kind):
    x = random_features(6, 4, seed=5)
    got = pc_kernels.pairwise_dissimilarity(x.to(DEVICE), kind, backend=path.backend)
    expected = [
        [oracle.dissimilarity(a, b, kind) if i != j else 0.0 for j, b in enumerate(x.tolist())]
        for i, a in enumerate(x.tolist())
    ]
    torch.testing.assert_close(got.cpu(), torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path", usable_paths(), ids=str)
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("normalize", ["row_std", "none"])
def test_rank_matrix_matches_brute_force(path, hard, normalize):
    x = random_features(8, 3, seed=6)
    got = pc_kernels.soft_ranks(x.to(DEVICE), tau=0.2, normalize=normalize, hard=hard, **path.options)
    expected = oracle.ranks(x.tolist(), 0.2, "euclidean", normalize, hard)
    # Binned soft ranks: within their documented bound of the exact ones.
    atol = 1e-12 if hard or path.exact else RANK_TOLERANCE
    torch.testing.assert_close(got.cpu(), torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=atol)
