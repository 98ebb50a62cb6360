"""Property-based agreement with the brute-force oracle over batch sizes, feature sizes and dtypes."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pc_kernels
from helpers import cpu_backends
import oracle

# The interpreter makes Triton far too slow for dozens of random examples; it has its own tests.
BACKENDS = [b for b in cpu_backends() if b != "triton"]
TOLERANCE = {torch.float64: 1e-9, torch.float32: 2e-4, torch.bfloat16: 2e-4, torch.float16: 2e-4}

batch_sizes = st.one_of(st.sampled_from([3, 5, 7, 11, 13, 17, 23, 29, 31, 37]), st.integers(3, 40))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None)
@given(
    n=batch_sizes,
    p=st.integers(1, 9),
    q=st.integers(1, 9),
    dtype=st.sampled_from([torch.float64, torch.float32, torch.bfloat16, torch.float16]),
    tau=st.sampled_from([0.05, 0.1, 0.5, 2.0]),
    dissimilarity=st.sampled_from(["euclidean", "sqeuclidean", "cosine"]),
    discrepancy=st.sampled_from(["mse", "spearman"]),
    teacher_ranks=st.sampled_from(["soft", "hard"]),
    seed=st.integers(0, 2**16),
)
def test_backend_agrees_with_oracle(backend, n, p, q, dtype, tau, dissimilarity, discrepancy, teacher_ranks, seed):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(n, p, generator=generator).to(dtype)
    teacher = torch.randn(n, q, generator=generator).to(dtype)
    options = dict(dissimilarity=dissimilarity, discrepancy=discrepancy, teacher_ranks=teacher_ranks, normalize="row_std")
    got = pc_kernels.perception_coherence_loss(student, teacher, tau=tau, reduction="none", backend=backend, **options)
    # The oracle sees exactly the values the backend saw (after rounding to dtype).
    expected = oracle.row_losses(student.double().tolist(), teacher.double().tolist(), tau=tau, **options)
    assert got.shape == (n,)
    assert all(math.isfinite(v) for v in got.tolist())
    if teacher_ranks == "hard" and dtype != torch.float64:
        # A float32 rounding can flip an exact tie of the hard ranks; compare only the mean.
        assert abs(got.double().mean().item() - sum(expected) / n) < 0.05
        return
    torch.testing.assert_close(got.double(), torch.tensor(expected, dtype=torch.float64),
                               rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
