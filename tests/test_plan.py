"""The execution plan (pc_kernels/plan.py): resolved once per call from options, device and environment,
the only code that reads environment variables, and reported by the module as ``last_plan``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import pc_kernels
from helpers import cpu_backends, random_features
from pc_kernels import plan as plan_module
from pc_kernels.options import LossOptions
from pc_kernels.plan import resolve_plan

PACKAGE = Path(pc_kernels.__file__).resolve().parent
CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def _plan(device=CPU, n=100, features=8, dtype=torch.float32, environ=None, soft_sides=2, **options):
    return resolve_plan(LossOptions(**options).validated(), device, n, features, dtype, soft_sides, environ or {})


def test_only_the_plan_reads_environment_variables():
    """In the library proper."""
    readers = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if re.search(r"os\.environ|getenv", path.read_text(encoding="utf-8"))
    ]
    assert readers == ["plan.py"]


@pytest.mark.parametrize(
    "backend, algorithm, stages",
    [
        ("torch", "dense", ("torch", "dense")),
        ("torch", "binned", ("torch", "binned")),
        ("triton", "dense", ("triton", "triton")),
        ("triton", "binned", ("triton", "triton_binned")),
        ("reference", "dense", ("reference", "reference")),
    ],
)
def test_a_path_is_a_dissimilarity_stage_and_a_rank_stage(backend, algorithm, stages):
    plan = _plan(CUDA, backend=backend, algorithm=algorithm)
    assert (plan.distance_stage, plan.rank_stage) == stages
    assert plan.backend == backend and plan.algorithm == algorithm


def test_auto_is_torch_on_cpu_and_triton_on_cuda():
    assert _plan(CPU, environ={"TRITON_INTERPRET": "1"}).backend == "torch"
    assert _plan(CUDA).backend == "triton"
    assert pc_kernels.resolve_backend("auto", "cpu") == "torch"


@pytest.mark.parametrize(
    ("installed", "version", "reason"),
    [(False, None, "triton is not installed"), (True, "3.5.1", "the installed triton 3.5.1 is older than 3.6")],
)
def test_cuda_without_a_usable_triton_falls_back_with_a_warning_or_names_the_package(
    monkeypatch, installed, version, reason
):
    monkeypatch.setattr(plan_module, "_TRITON_INSTALLED", installed)
    monkeypatch.setattr(plan_module, "_TRITON_VERSION", version)
    install = re.escape("pip install 'triton>=3.6'")
    with pytest.warns(UserWarning, match=f"{reason}.*{install}"):
        assert pc_kernels.resolve_backend("auto", "cuda") == "torch"
    with pytest.raises(RuntimeError, match=f"{reason}.*{install}"):
        pc_kernels.resolve_backend("triton", "cuda")
    assert pc_kernels.available_backends("cuda") == ["reference", "torch"]


@pytest.mark.parametrize("version", ["3.6.0", "3.9.0+git1234", "4.0.0", None])
def test_triton_3_6_and_later_or_of_unknown_version_counts_as_usable(monkeypatch, version):
    monkeypatch.setattr(plan_module, "_TRITON_INSTALLED", True)
    monkeypatch.setattr(plan_module, "_TRITON_VERSION", version)
    assert pc_kernels.available_backends("cuda") == ["reference", "torch", "triton"]


def test_triton_on_cpu_needs_the_interpreter():
    with pytest.raises(RuntimeError, match="backend='triton' runs on CUDA tensors.*TRITON_INTERPRET=1"):
        _plan(CPU, backend="triton")
    assert _plan(CPU, backend="triton", environ={"TRITON_INTERPRET": "1"}).backend == "triton"


def test_blocks_follow_chunk_rows_or_the_device_budget():
    assert _plan(chunk_rows=7).block_rows == 7
    assert _plan(chunk_rows=1000).block_rows == 100
    assert _plan(rows=(10, 20)).block_rows == 10
    large = _plan(n=20000)
    assert 1 <= large.block_rows < 20000
    assert large.block_rows * 20000 * 8 <= plan_module.BLOCK_BYTES["cpu"]
    assert _plan(CUDA, n=20000).block_rows > large.block_rows


def test_the_dense_workspace_comes_from_the_environment_or_the_default():
    default = _plan(n=1000)
    tiny = _plan(n=1000, environ={"PC_KERNELS_TORCH_WORKSPACE_BYTES": "1"})
    assert tiny.tile_rows == 1 < default.tile_rows
    for bad in ("lots", "0", "-5", "1.5"):
        with pytest.raises(
            ValueError, match=f"PC_KERNELS_TORCH_WORKSPACE_BYTES must be a positive integer.*{re.escape(bad)}"
        ):
            _plan(environ={"PC_KERNELS_TORCH_WORKSPACE_BYTES": bad})


# Digits of other scripts, which str.isdigit accepts and int() refuses ("²") or reads ("٣", "１").
NON_ASCII_DIGITS = ["²", "1²", "٣", "１", "৪০৯৬"]


@pytest.mark.parametrize("value", NON_ASCII_DIGITS)
@pytest.mark.parametrize(
    "variable, backend",
    [
        ("PC_KERNELS_TORCH_WORKSPACE_BYTES", "torch"),
        ("PC_KERNELS_TORCH_WORKSPACE_BYTES", "triton"),
        ("PC_KERNELS_REFERENCE_MEMORY_LIMIT", "reference"),
    ],
)
def test_byte_variables_accept_only_ascii_digits(monkeypatch, variable: str, backend: str, value: str) -> None:
    """Through the loss, on every backend that reads the variable: a ValueError naming the variable, the
    value and the ASCII digits, never int()'s message."""
    if backend not in cpu_backends():
        pytest.skip(f"backend {backend!r} does not run on CPU here")
    monkeypatch.setenv(variable, value)
    student, teacher = random_features(6, 3, seed=1), random_features(6, 2, seed=2)
    with pytest.raises(ValueError, match=f"{variable} must be a positive integer .*ASCII digits.*{re.escape(value)}"):
        pc_kernels.perception_coherence_loss(student, teacher, backend=backend)


def test_what_the_forward_keeps_follows_the_budget(monkeypatch):
    matrix = 999 * 1000 * 4  # one (n, n − 1) float32 matrix at n = 1000
    for budget, kept in [(3 * matrix, (True, True)), (3 * matrix - 1, (True, False)), (2 * matrix - 1, (False, False))]:
        monkeypatch.setattr(plan_module, "_kept_bytes", lambda device, budget=budget: budget)
        plan = _plan(n=1000, algorithm="binned")
        assert (plan.keep_ranks, plan.keep_distances) == kept, budget
        dense = _plan(n=1000, algorithm="dense")
        assert dense.keep_ranks and dense.keep_distances == kept[1], budget  # dense always keeps its ranks
    assert _plan(n=1000, algorithm="binned", rows=(0, 10)).keep_distances


def test_the_cpu_budget_is_a_share_of_the_machines_memory():
    physical = plan_module.os.sysconf("SC_PAGE_SIZE") * plan_module.os.sysconf("SC_PHYS_PAGES")
    assert plan_module._kept_bytes(CPU) == int(plan_module.KEPT_MEMORY_SHARE * physical)
    assert plan_module._kept_bytes(CUDA) == plan_module.KEPT_BYTES["cuda"]


def test_the_fast_sigmoid_is_opt_in_for_float32_triton_on_cuda():
    on = {"PC_KERNELS_FAST_SIGMOID": "1"}
    assert _plan(CUDA, environ=on).fast_sigmoid
    assert not _plan(CUDA).fast_sigmoid
    assert not _plan(CUDA, environ=on, dtype=torch.float64).fast_sigmoid
    assert not _plan(CUDA, environ=on, backend="torch").fast_sigmoid
    assert not _plan(CPU, environ={**on, "TRITON_INTERPRET": "1"}, backend="triton").fast_sigmoid


def test_the_reference_memory_limit_comes_from_the_environment():
    with pytest.raises(ValueError, match=r"backend='reference' would need about .* use backend='torch'"):
        _plan(n=80, backend="reference", environ={"PC_KERNELS_REFERENCE_MEMORY_LIMIT": str(2**22)})
    assert _plan(n=80, backend="reference").backend == "reference"
    assert _plan(n=80, backend="reference", soft_sides=0, environ={"PC_KERNELS_REFERENCE_MEMORY_LIMIT": str(2**22)})
    with pytest.raises(ValueError, match="PC_KERNELS_REFERENCE_MEMORY_LIMIT"):
        _plan(backend="reference", environ={"PC_KERNELS_REFERENCE_MEMORY_LIMIT": "4GiB"})


def test_the_module_reports_the_plan_of_its_last_call():
    criterion = pc_kernels.PerceptionCoherenceLoss(algorithm="binned", chunk_rows=3)
    assert criterion.last_plan is None and criterion.last_backend is None
    x, y = random_features(8, 3, seed=1), random_features(8, 2, seed=2)
    criterion(x, y)
    assert criterion.last_backend == "torch"
    assert (criterion.last_plan.rank_stage, criterion.last_plan.block_rows) == ("binned", 3)
    assert "algorithm='binned'" in criterion.last_plan.describe()


def test_the_environment_is_read_at_each_call(monkeypatch):
    x = random_features(40, 3, seed=3)
    criterion = pc_kernels.PerceptionCoherenceLoss()
    criterion(x, x)
    default = criterion.last_plan.tile_rows
    monkeypatch.setenv("PC_KERNELS_TORCH_WORKSPACE_BYTES", "1")
    criterion(x, x)
    assert criterion.last_plan.tile_rows == 1 < default


@pytest.mark.parametrize("device, loops", [(CPU, "numba"), (CPU, "torch"), (CUDA, "torch")])
def test_auto_runs_binned_from_the_measured_n_of_each_device_class(device, loops):
    """algorithm="auto" (the default): "dense" below AUTO_BINNED_FROM of the device class, "binned" from it
    on; explicit choices stand; the reference backend and distances alone are always dense."""
    environ = {"PC_KERNELS_CPU_LOOPS": loops}
    if loops == "numba" and not plan_module._NUMBA_INSTALLED:
        pytest.skip("numba is not installed")
    crossover = plan_module.AUTO_BINNED_FROM[plan_module.auto_device_class(device, loops)]
    backend = {"backend": "torch"}
    assert _plan(device, n=crossover - 1, environ=environ, **backend).algorithm == "dense"
    assert _plan(device, n=crossover, environ=environ, **backend).algorithm == "binned"
    assert _plan(device, n=crossover, environ=environ, teacher_ranks="hard", **backend).algorithm == "binned"
    assert _plan(device, n=crossover, environ=environ, rows=(0, 1), **backend).algorithm == "binned"  # n decides
    assert _plan(device, n=crossover, environ=environ, algorithm="dense", **backend).algorithm == "dense"
    assert _plan(device, n=crossover - 1, environ=environ, algorithm="binned", **backend).algorithm == "binned"
    assert _plan(device, n=crossover, environ=environ, soft_sides=0, **backend).algorithm == "dense"
    assert _plan(CPU, n=min(crossover, 100), backend="reference").algorithm == "dense"


def test_bins_need_an_explicit_binned_algorithm():
    with pytest.raises(ValueError, match="bins applies only to algorithm='binned'.*algorithm='auto'"):
        pc_kernels.perception_coherence_loss(random_features(8, 3, seed=1), random_features(8, 2, seed=2), bins=64)


def test_auto_computes_what_the_algorithm_it_reports_computes():
    """Below the crossover "auto" is bitwise the dense loss, from it on the binned one (so within the
    binned bound of dense), and ``last_plan`` names the one that ran."""
    crossover = plan_module.AUTO_BINNED_FROM[plan_module.auto_device_class(CPU, plan_module._loops(CPU, {}))]
    for n, expected in ((crossover - 1, "dense"), (crossover, "binned")):
        student, teacher = random_features(n, 5, seed=n), random_features(n, 4, seed=n + 1)
        criterion = pc_kernels.PerceptionCoherenceLoss(backend="torch")
        value = criterion(student, teacher)
        assert criterion.last_plan.algorithm == expected
        assert torch.equal(value, pc_kernels.perception_coherence_loss(student, teacher, algorithm=expected))
