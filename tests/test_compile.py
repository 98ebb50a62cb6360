"""Clause 4 of the numerics contract: torch.compile(fullgraph=True) of a training step on every path.

Each fast path is one ``torch.library`` operator (pc_kernels/pipeline.py), so Dynamo traces the loss as
a single node whatever n is: no Python loop over row blocks or tiles is unrolled into the graph (what
made compiling the old torch backend take minutes). Compile time and the compiled step's speed against
eager are measured by the benchmark report (benchmarks, provider ``torch_compiled_step``), not here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pc_kernels
from helpers import DEVICE, random_features, usable_paths

FAST_PATHS = [path for path in usable_paths() if path.backend != "reference"]


def _step(head: torch.nn.Module, path_options: dict):
    def forward(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return pc_kernels.perception_coherence_loss(
            torch.tanh(head(inputs)), targets, discrepancy="spearman", **path_options
        )

    return forward


def _graphs(forward, inputs, targets) -> list[torch.fx.GraphModule]:
    graphs = []

    def capture(graph_module: torch.fx.GraphModule, example_inputs: list) -> torch.fx.GraphModule:
        graphs.append(graph_module)
        return graph_module

    torch._dynamo.reset()
    torch.compile(forward, fullgraph=True, backend=capture)(inputs, targets)
    return graphs


@pytest.mark.parametrize("path", usable_paths(), ids=str)
def test_compiled_training_step_matches_eager(path):
    torch._dynamo.reset()
    head = torch.nn.Linear(6, 5, dtype=torch.float64, device=DEVICE)
    x = random_features(11, 6, seed=1).to(DEVICE)
    teacher = random_features(11, 4, seed=2).to(DEVICE)
    forward = _step(head, path.options)
    compiled = torch.compile(forward, fullgraph=True)
    loss = compiled(x, teacher)
    (grad,) = torch.autograd.grad(loss, head.weight)
    eager = forward(x, teacher)
    (eager_grad,) = torch.autograd.grad(eager, head.weight)
    torch.testing.assert_close(loss, eager, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("path", FAST_PATHS, ids=str)
def test_the_loss_is_one_graph_node_whatever_n(path):
    head = torch.nn.Linear(6, 5, device=DEVICE)
    sizes = []
    for n in (9, 40):
        x = random_features(n, 6, seed=3, dtype=torch.float32).to(DEVICE)
        teacher = random_features(n, 4, seed=4, dtype=torch.float32).to(DEVICE)
        (graph,) = _graphs(_step(head, path.options), x, teacher)
        calls = [node for node in graph.graph.nodes if "pc_kernels" in str(node.target)]
        assert len(calls) == 1, [str(node.target) for node in graph.graph.nodes]
        sizes.append(len(graph.graph.nodes))
    assert sizes[0] == sizes[1]


@pytest.mark.parametrize("path", FAST_PATHS, ids=str)
def test_compiled_rank_and_distance_matrices_match_eager(path):
    torch._dynamo.reset()
    x = random_features(10, 3, seed=5).to(DEVICE).requires_grad_()

    def matrices(features: torch.Tensor) -> torch.Tensor:
        ranks = pc_kernels.soft_ranks(features, tau=0.3, **path.options)
        return ranks.sum() + pc_kernels.pairwise_dissimilarity(features, "cosine", backend=path.backend).sum()

    compiled = torch.compile(matrices, fullgraph=True)
    (grad,) = torch.autograd.grad(compiled(x), x)
    (eager_grad,) = torch.autograd.grad(matrices(x), x)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-10, atol=1e-13)


def test_an_eager_loss_and_backward_do_not_import_torch_dynamo():
    """The operators are defined without ``torch.library.custom_op``'s dynamo wrapper, whose first call
    imports torch._dynamo (about a second): an eager first call (all three operators) pays only for itself."""
    program = (
        "import sys, torch, pc_kernels\n"
        "x = torch.randn(9, 3, requires_grad=True)\n"
        "pc_kernels.perception_coherence_loss(x, torch.randn(9, 2)).backward()\n"
        "pc_kernels.soft_ranks(x).sum().backward()\n"
        "pc_kernels.pairwise_dissimilarity(x).sum().backward()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", program], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
