"""torch.compile(fullgraph=True) traces a model that calls the loss with backend="triton".

The kernels sit behind torch.library custom ops with fake implementations and registered
autograd formulas, so Dynamo sees no Python it cannot trace and AOTAutograd traces the backward.
"""

from __future__ import annotations

import pytest
import torch

import pc_kernels
from helpers import random_features

pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if "triton" not in pc_kernels.available_backends(DEVICE):
    pytest.skip("triton backend unavailable (needs CUDA or TRITON_INTERPRET=1)", allow_module_level=True)


def test_compiled_model_with_triton_loss_has_no_graph_breaks_and_matches_eager() -> None:
    torch._dynamo.reset()
    head = torch.nn.Linear(6, 5, dtype=torch.float64, device=DEVICE)
    x = random_features(9, 6, seed=1).to(DEVICE)
    teacher = random_features(9, 4, seed=2).to(DEVICE)

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        features = torch.tanh(head(inputs))
        return pc_kernels.perception_coherence_loss(features, targets, discrepancy="spearman", backend="triton")

    compiled = torch.compile(step, fullgraph=True)
    loss = compiled(x, teacher)
    (grad,) = torch.autograd.grad(loss, head.weight)
    eager = step(x, teacher)
    (eager_grad,) = torch.autograd.grad(eager, head.weight)
    torch.testing.assert_close(loss, eager, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-10, atol=1e-13)
