"""backend="triton" against the reference backend: values and gradients, every option, awkward sizes.

On this CPU machine the kernels run under the Triton interpreter (conftest.py); with a GPU the same
tests run the compiled kernels on CUDA tensors. Sizes are small because the interpreter costs a few
milliseconds per program and k-tile; n = 3, 5, 17, 33, 70 and odd feature sizes are not multiples of
any block size, and ``small_blocks`` forces several tiles per row to exercise the tile loops' tails.
"""

from __future__ import annotations

import pytest
import torch

import pc_kernels
from helpers import OPTION_GRID, option_id, random_features

pytest.importorskip("triton")
if "triton" not in pc_kernels.available_backends("cuda" if torch.cuda.is_available() else "cpu"):
    pytest.skip("triton backend unavailable (needs CUDA or TRITON_INTERPRET=1)", allow_module_level=True)

from pc_kernels.kernels import dissimilarity, soft_rank  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Sizes cycled through the option grid so that every size meets several option combinations.
GRID_SIZES = (5, 17, 33)


def _features(n: int, p: int, q: int, seed: int, dtype: torch.dtype = torch.float64):
    student = random_features(n, p, seed=seed, dtype=dtype).to(DEVICE).requires_grad_()
    teacher = random_features(n, q, seed=seed + 1, dtype=dtype).to(DEVICE).requires_grad_()
    return student, teacher


def _loss_and_grads(student, teacher, weights, **options):
    """Per-row losses and the gradients of Σ_i w_i ℓ_i with respect to both inputs."""
    losses = pc_kernels.perception_coherence_loss(student, teacher, reduction="none", **options)
    inputs = [x for x in (student, teacher) if x.requires_grad]
    grads = torch.autograd.grad((losses * weights).sum(), inputs, allow_unused=True)
    return losses.detach(), [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def _assert_agree(student, teacher, rtol: float, atol: float, **options) -> None:
    weights = torch.randn(student.shape[0], dtype=student.dtype, generator=torch.Generator().manual_seed(7))
    weights = weights.to(DEVICE)
    if options.get("rows") is not None:
        weights = weights[options["rows"][0] : options["rows"][1]]
    got, got_grads = _loss_and_grads(student, teacher, weights, backend="triton", **options)
    want, want_grads = _loss_and_grads(student, teacher, weights, backend="reference", **options)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol)


@pytest.fixture
def small_blocks(monkeypatch):
    """Several rank tiles per row under the interpreter (on GPU the tiles are 64 wide anyway)."""
    monkeypatch.setattr(soft_rank, "INTERPRETER_BLOCK", 8)


@pytest.mark.parametrize("index, options", list(enumerate(OPTION_GRID)), ids=[option_id(o) for o in OPTION_GRID])
def test_every_option_matches_reference_float64(index: int, options: dict) -> None:
    n = GRID_SIZES[index % len(GRID_SIZES)]
    student, teacher = _features(n, 9, 6, seed=index)
    _assert_agree(student, teacher, rtol=1e-9, atol=1e-11, tau=0.3, **options)


@pytest.mark.parametrize("n, p, q", [(3, 1, 2), (70, 11, 5)])
def test_extreme_sizes_match_reference(n: int, p: int, q: int) -> None:
    student, teacher = _features(n, p, q, seed=n)
    _assert_agree(student, teacher, rtol=1e-9, atol=1e-11, discrepancy="spearman")


@pytest.mark.parametrize("dissimilarity", ["euclidean", "cosine"])
def test_several_tiles_per_row_match_reference(small_blocks, dissimilarity: str) -> None:
    student, teacher = _features(19, 17, 3, seed=3)
    _assert_agree(student, teacher, rtol=1e-9, atol=1e-11, dissimilarity=dissimilarity, discrepancy="spearman")


def test_float32_matches_float64_reference() -> None:
    student, teacher = _features(33, 40, 23, seed=5, dtype=torch.float32)
    _assert_agree(student, teacher, rtol=1e-4, atol=1e-5, tau=0.2)


@pytest.mark.parametrize("rows", [(0, 1), (4, 13), (16, 17)])
def test_row_subset_is_the_slice_of_the_full_loss(rows: tuple[int, int]) -> None:
    student, teacher = _features(17, 7, 4, seed=11)
    full = pc_kernels.perception_coherence_loss(student, teacher, backend="triton", reduction="none")
    part = pc_kernels.perception_coherence_loss(student, teacher, backend="triton", reduction="none", rows=rows)
    torch.testing.assert_close(part, full[rows[0] : rows[1]], rtol=0, atol=1e-14)
    full_grads = torch.autograd.grad(full[rows[0] : rows[1]].sum(), (student, teacher))
    part_grads = torch.autograd.grad(part.sum(), (student, teacher))
    for a, b in zip(part_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_row_subset_matches_reference_for_spearman_and_hard_teacher(small_blocks) -> None:
    student, teacher = _features(17, 5, 6, seed=12)
    _assert_agree(student, teacher, rtol=1e-9, atol=1e-11, rows=(5, 14), discrepancy="spearman", teacher_ranks="hard")


@pytest.mark.parametrize(
    "options",
    [
        dict(dissimilarity="euclidean", discrepancy="mse"),
        dict(dissimilarity="cosine", discrepancy="spearman", normalize="none"),
        dict(dissimilarity="sqeuclidean", discrepancy="spearman", teacher_ranks="hard"),
    ],
    ids=option_id,
)
def test_gradcheck_float64(options: dict) -> None:
    student, teacher = _features(5, 3, 2, seed=21)
    if options.get("teacher_ranks") == "hard":
        teacher = teacher.detach()

    def loss(s, t):
        return pc_kernels.perception_coherence_loss(s, t, tau=0.5, backend="triton", reduction="none", **options)

    assert torch.autograd.gradcheck(loss, (student, teacher), fast_mode=True)


def test_full_gradcheck_at_tiny_n() -> None:
    student, teacher = _features(4, 2, 2, seed=22)

    def loss(s, t):
        return pc_kernels.perception_coherence_loss(s, t, tau=0.5, backend="triton", discrepancy="spearman")

    assert torch.autograd.gradcheck(loss, (student, teacher))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype: torch.dtype) -> None:
    """fp16/bf16 features are computed in float32: within 1e-5 of the reference on the same values."""
    student, teacher = _features(17, 12, 8, seed=31, dtype=dtype)
    loss = pc_kernels.perception_coherence_loss(student, teacher, backend="triton")
    loss.backward()
    want = pc_kernels.perception_coherence_loss(student.double(), teacher.double(), backend="reference")
    assert loss.dtype == torch.float32 and student.grad.dtype == dtype
    torch.testing.assert_close(loss.double(), want.detach(), rtol=1e-5, atol=1e-6)
    assert torch.isfinite(student.grad.float()).all() and torch.isfinite(teacher.grad.float()).all()


def test_autocast_region_matches_plain_call() -> None:
    student, teacher = _features(9, 6, 4, seed=32, dtype=torch.float32)
    plain = pc_kernels.perception_coherence_loss(student, teacher, backend="triton")
    with torch.autocast(device_type=DEVICE, dtype=torch.bfloat16):
        inside = pc_kernels.perception_coherence_loss(student, teacher, backend="triton")
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, plain, rtol=0, atol=0)


def test_layouts_inputs_untouched_and_deterministic() -> None:
    """Transposed features, expanded upstream gradient (reduction="none" then .sum()), no writes to
    the inputs, and bitwise-identical gradients on a second run."""
    base_s = random_features(8, 17, seed=41).to(DEVICE)
    base_t = random_features(6, 17, seed=42).to(DEVICE)
    student = base_s.T.requires_grad_()
    teacher = base_t.T.requires_grad_()
    before = (student.detach().clone(), teacher.detach().clone())
    grads = []
    for _ in range(2):
        losses = pc_kernels.perception_coherence_loss(student, teacher, backend="triton", reduction="none")
        grads.append(torch.autograd.grad(losses.sum(), (student, teacher)))
    want = pc_kernels.perception_coherence_loss(student, teacher, backend="reference", reduction="none")
    want_grads = torch.autograd.grad(want.sum(), (student, teacher))
    assert torch.equal(student.detach(), before[0]) and torch.equal(teacher.detach(), before[1])
    assert all(torch.equal(a, b) for a, b in zip(grads[0], grads[1]))
    for a, b in zip(grads[0], want_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_duplicate_rows_tiny_tau_and_large_norms_stay_finite() -> None:
    student = random_features(9, 5, seed=51).to(DEVICE) * 1e4
    student[3] = student[1]
    teacher = random_features(9, 4, seed=52).to(DEVICE)
    teacher[7] = teacher[2]
    student.requires_grad_()
    teacher.requires_grad_()
    _assert_agree(student, teacher, rtol=1e-8, atol=1e-10)
    loss = pc_kernels.perception_coherence_loss(student, teacher, tau=1e-4, backend="triton")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all() and torch.isfinite(teacher.grad).all()


@pytest.mark.parametrize("kind", ["euclidean", "sqeuclidean", "cosine"])
def test_float32_dissimilarity_precision_and_exact_duplicates(kind: str) -> None:
    """The Gram form in float32: typical entries within 1e-5 relative; a duplicate pair is exactly 0."""
    x = random_features(37, 29, seed=61, dtype=torch.float32).to(DEVICE) + 3.0
    x[20] = x[5]
    got = pc_kernels.pairwise_dissimilarity(x, kind, backend="triton")
    want = pc_kernels.pairwise_dissimilarity(x.double(), kind, backend="reference")
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5 if kind == "cosine" else 0)
    if kind != "cosine":
        assert got[5, 20] == 0 and got[20, 5] == 0


@pytest.mark.parametrize("hard", [False, True])
def test_rank_matrix_and_its_gradient(small_blocks, hard: bool) -> None:
    x = random_features(13, 6, seed=71).to(DEVICE).requires_grad_()
    weights = random_features(13, 13, seed=72).to(DEVICE)
    got = pc_kernels.soft_ranks(x, tau=0.2, hard=hard, backend="triton")
    want = pc_kernels.soft_ranks(x, tau=0.2, hard=hard, backend="reference")
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    if hard:
        assert not got.requires_grad
        return
    (got_grad,) = torch.autograd.grad((got * weights).sum(), x)
    (want_grad,) = torch.autograd.grad((want * weights).sum(), x)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-9, atol=1e-11)


def test_dissimilarity_gradient_with_every_kind() -> None:
    x = random_features(21, 19, seed=81).to(DEVICE).requires_grad_()
    weights = random_features(21, 21, seed=82).to(DEVICE)
    for kind in dissimilarity.KINDS:
        got = pc_kernels.pairwise_dissimilarity(x, kind, backend="triton")
        want = pc_kernels.pairwise_dissimilarity(x, kind, backend="reference")
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        (got_grad,) = torch.autograd.grad((got * weights).sum(), x)
        (want_grad,) = torch.autograd.grad((want * weights).sum(), x)
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("teacher_grad", [False, True])
def test_saved_for_backward_is_a_few_rank_matrices(teacher_grad: bool) -> None:
    """Autograd keeps R^S, R^T and D^S (plus D^T when the teacher needs a gradient), nothing cubic."""
    n, p, q = 11, 4, 3
    student, teacher = _features(n, p, q, seed=91)
    teacher.requires_grad_(teacher_grad)
    saved = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        pc_kernels.perception_coherence_loss(student, teacher, backend="triton")
    distinct = {t.data_ptr(): t.numel() for t in saved if t.numel() > 0}
    square = sum(numel for numel in distinct.values() if numel == n * n)
    assert square == (4 if teacher_grad else 3) * n * n
    assert sum(distinct.values()) - square <= n * (p + q + 6) + 2
