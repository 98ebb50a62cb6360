"""The float64 Gram-form distance rows (pc_kernels/gram_distances.py) against coordinate differences."""

from __future__ import annotations

import pytest
import torch

from helpers import random_features
from pc_kernels.gram_distances import gram_distance_rows


def _direct(x1: torch.Tensor, x2: torch.Tensor, squared: bool) -> torch.Tensor:
    distances = (x1[:, None, :] - x2[None, :, :]).norm(dim=2)
    return distances.square() if squared else distances


@pytest.mark.parametrize("squared", [False, True])
def test_values_and_gradients_match_coordinate_differences(squared: bool) -> None:
    x = random_features(23, 5, seed=1).requires_grad_()
    g = random_features(7, 23, seed=2)
    distances = gram_distance_rows(x[4:11], x, squared)
    expected = _direct(x[4:11], x, squared)
    torch.testing.assert_close(distances, expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(distances, x, g)
    (expected_grad,) = torch.autograd.grad(expected, x, torch.where(expected > 0, g, 0.0))
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("squared", [False, True])
def test_gradcheck(squared: bool) -> None:
    x1 = random_features(4, 3, seed=3).requires_grad_()
    x2 = random_features(6, 3, seed=4).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: gram_distance_rows(a, b, squared), (x1, x2))


def test_float32_far_from_the_origin_keeps_small_distances() -> None:
    """Tight clusters far apart: the float32 Gram form would lose them, the float64 one does not."""
    g = torch.Generator().manual_seed(5)
    centres = torch.tensor([[1e4] * 8, [-1e4] * 8], dtype=torch.float64)
    x = (centres[torch.arange(40) % 2] + torch.randn(40, 8, generator=g, dtype=torch.float64)).float()
    distances = gram_distance_rows(x, x, False)
    expected = _direct(x.double(), x.double(), False)
    off_diagonal = ~torch.eye(40, dtype=torch.bool)
    relative = ((distances.double() - expected).abs() / expected.clamp_min(1e-30))[off_diagonal]
    assert relative.max().item() < 1e-5


def test_duplicates_give_zero_distance_and_zero_gradient() -> None:
    x = random_features(5, 4, seed=6).float().repeat(2, 1).requires_grad_()
    distances = gram_distance_rows(x, x, False)
    duplicate = torch.arange(10)
    assert torch.equal(distances[duplicate, (duplicate + 5) % 10], torch.zeros(10))
    assert torch.equal(distances.diagonal(), torch.zeros(10))
    (grad,) = torch.autograd.grad(distances[0, 5], x, retain_graph=True)
    assert torch.equal(grad, torch.zeros_like(grad))
    (grad,) = torch.autograd.grad(distances.sum(), x)
    assert torch.isfinite(grad).all()
