"""distributed=True: W processes (Gloo, loopback) on slices of a batch == one process on the whole batch.

Each world size is one spawned job that runs every case (process start-up dominates the cost);
the ranks save their results and the test compares them, here, with a single process computing
the same loss on the concatenated batch: the loss value and every parameter gradient of a small
student (and, in one case, teacher) network wrapped in DistributedDataParallel.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import pc_kernels
from helpers import usable_paths
from pc_kernels import perception_coherence_loss

# Wall-clock bound of one spawned job, and of each collective inside it: a hang fails the test.
JOB_TIMEOUT_S = 180
COLLECTIVE_TIMEOUT_S = 60

LOCAL_SIZES = {2: ([4, 4], [2, 5]), 3: ([3, 3, 3], [2, 5, 1])}
# Non-default options, each run once (with reduction "mean" and unequal local sizes).
OPTION_VARIANTS = (
    {"dissimilarity": "cosine", "discrepancy": "spearman", "teacher_ranks": "hard", "tau": 0.3},
    {"dissimilarity": "sqeuclidean", "normalize": "none", "tau": 0.5},
)
# Every path usable on CPU tensors: (backend, algorithm) pairs, the Triton ones under the interpreter
# (TRITON_INTERPRET=1, set by conftest without CUDA).
CPU_PATHS = [(p.backend, p.algorithm) for p in usable_paths() if p.backend in pc_kernels.available_backends("cpu")]

# What the last rank passes differently in the error cases, and words the error must contain.
DEFAULT_LOCAL_INPUT = {"tau": 0.1, "p": 6, "dtype": torch.float64, "n": 3, "teacher_n": 3}
LAST_RANK_DEVIATIONS = {
    "tau": ({"tau": 0.2}, "tau"),
    "student features": ({"p": 7}, "student features per sample"),
    "student dtype": ({"dtype": torch.float32}, "student dtype"),
    "empty rank": ({"n": 0, "teacher_n": 0}, "at least one sample"),
    "teacher samples": ({"teacher_n": 4}, "same number of samples"),
}


def agreement_cases(world: int, paths: list[tuple[str, str]], device: str, dtype: str) -> list[dict]:
    """Every path × reduction × (equal, unequal) local sizes, plus option variants and a trained teacher.

    The binned algorithm's grid is chosen per row (its spacing depends only on n), so each rank's rows
    match the single process too."""
    cases = [
        dict(backend=b, algorithm=a, reduction=r, sizes=s, options={}, trained_teacher=False)
        for b, a in paths
        for r in ("mean", "sum", "none")
        for s in LOCAL_SIZES[world]
    ]
    unequal = LOCAL_SIZES[world][1]
    cases += [
        dict(backend=b, algorithm=a, reduction="mean", sizes=unequal, options=o, trained_teacher=False)
        for b, a in paths
        for o in OPTION_VARIANTS
    ]
    cases += [
        dict(backend=b, algorithm=a, reduction="mean", sizes=unequal, options={}, trained_teacher=True)
        for b, a in paths
    ]
    return [dict(case, kind="agreement", seed=i, device=device, dtype=dtype) for i, case in enumerate(cases)]


def case_id(case: dict) -> str:
    options = f"{case['backend']}-{case['algorithm']}-{case['reduction']}-{case['options']}"
    return f"{options}, local sizes {case['sizes']}, trained teacher {case['trained_teacher']}"


def build(case: dict) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """The case's student (5 → 6) and teacher (5 → 4) networks and its global inputs (N, 5)."""
    torch.manual_seed(case["seed"])
    dtype, device = getattr(torch, case["dtype"]), torch.device(case["device"])
    student = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6)).to(device, dtype)
    teacher = nn.Linear(5, 4).to(device, dtype)
    inputs = torch.randn(sum(case["sizes"]), 5, dtype=dtype, device=device)
    return student, teacher, inputs


def loss_and_gradients(case: dict, rows: slice | None) -> dict:
    """Loss and parameter gradients on ``inputs[rows]`` (DDP, distributed=True) or the whole batch (None)."""
    student_net, teacher_net, inputs = build(case)
    trained = [student_net, teacher_net] if case["trained_teacher"] else [student_net]
    if rows is not None:
        inputs = inputs[rows]
        student_net, *teacher_ddp = [DistributedDataParallel(m) for m in trained]
        teacher_net = teacher_ddp[0] if teacher_ddp else teacher_net
    student = student_net(inputs)
    with torch.set_grad_enabled(case["trained_teacher"]):
        teacher = teacher_net(inputs)
    loss = perception_coherence_loss(
        student,
        teacher,
        backend=case["backend"],
        algorithm=case["algorithm"],
        reduction=case["reduction"],
        distributed=rows is not None,
        **case["options"],
    )
    loss.sum().backward()
    return {"loss": loss.detach().cpu(), "grads": [p.grad.cpu() for m in trained for p in m.parameters()]}


def error_result(case: dict, rank: int, world: int) -> dict:
    """The ValueError text (or None) when the last rank passes ``case['deviation']``."""
    local = dict(DEFAULT_LOCAL_INPUT)
    if rank == world - 1:
        local.update(LAST_RANK_DEVIATIONS[case["deviation"]][0])
    student = torch.randn(local["n"], local["p"], dtype=local["dtype"], requires_grad=True)
    teacher = torch.randn(local["teacher_n"], 4, dtype=torch.float64)
    try:
        perception_coherence_loss(student, teacher, tau=local["tau"], backend="reference", distributed=True)
    except ValueError as error:
        return {"error": str(error)}
    return {"error": None}


def run_case(case: dict, rank: int, world: int) -> dict:
    if case["kind"] == "error":
        return error_result(case, rank, world)
    start = sum(case["sizes"][:rank])
    return loss_and_gradients(case, slice(start, start + case["sizes"][rank]))


def worker(rank: int, world: int, store_file: str, cases: list[dict], out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store_file}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
    )
    try:
        results = [run_case(case, rank, world) for case in cases]
    finally:
        dist.destroy_process_group()
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


def run_job(world: int, cases: list[dict], tmp_dir: Path) -> list[list[dict]]:
    """Spawn ``world`` ranks running every case; per rank, the list of case results."""
    context = mp.start_processes(
        worker,
        args=(world, str(tmp_dir / "store"), cases, str(tmp_dir)),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not context.join(timeout=max(deadline - time.monotonic(), 0.1)):
        if time.monotonic() >= deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {world}-process job did not finish within {JOB_TIMEOUT_S} s")
    return [torch.load(tmp_dir / f"rank{r}.pt") for r in range(world)]


def error_cases() -> list[dict]:
    return [dict(kind="error", deviation=d) for d in LAST_RANK_DEVIATIONS]


@pytest.fixture(scope="module", params=[2, 3], ids=lambda w: f"world{w}")
def cpu_job(request, tmp_path_factory) -> tuple[int, list[dict], list[list[dict]]]:
    world = request.param
    # Error cases first: a disagreement must leave the process group usable for the next step.
    cases = error_cases() + agreement_cases(world, CPU_PATHS, "cpu", "float64")
    return world, cases, run_job(world, cases, tmp_path_factory.mktemp(f"world{world}"))


def check_agreement(world: int, cases: list[dict], results: list[list[dict]], rtol: float, atol: float) -> int:
    """Compare every agreement case with one process on the concatenated batch; the number compared."""
    compared = 0
    for index, case in enumerate(cases):
        if case["kind"] != "agreement":
            continue
        single = loss_and_gradients(case, rows=None)
        for rank in range(world):
            got = results[rank][index]
            expected_loss = single["loss"]
            if case["reduction"] == "none":
                start = sum(case["sizes"][:rank])
                expected_loss = expected_loss[start : start + case["sizes"][rank]]
            where = f"{case_id(case)}, rank {rank}"
            torch.testing.assert_close(
                got["loss"], expected_loss, rtol=rtol, atol=atol, msg=lambda m, where=where: f"{where}, loss: {m}"
            )
            assert len(got["grads"]) == len(single["grads"])
            for g, e in zip(got["grads"], single["grads"], strict=True):
                torch.testing.assert_close(
                    g, e, rtol=rtol, atol=atol, msg=lambda m, where=where: f"{where}, gradient: {m}"
                )
        compared += 1
    return compared


def test_matches_single_process_on_concatenated_batch(cpu_job) -> None:
    world, cases, results = cpu_job
    assert ("reference", "dense") in CPU_PATHS and ("torch", "binned") in CPU_PATHS
    assert check_agreement(world, cases, results, rtol=1e-10, atol=1e-12) == len(cases) - len(LAST_RANK_DEVIATIONS)


def test_disagreeing_ranks_raise_on_every_rank(cpu_job) -> None:
    world, cases, results = cpu_job
    for index, case in enumerate(cases):
        if case["kind"] != "error":
            continue
        words = LAST_RANK_DEVIATIONS[case["deviation"]][1]
        for rank in range(world):
            message = results[rank][index]["error"]
            assert message is not None and words in message, (case["deviation"], rank, message)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled Triton kernels need CUDA")
def test_triton_paths_match_single_process_on_cuda(tmp_path) -> None:
    cases = agreement_cases(2, [("triton", "dense"), ("triton", "binned")], "cuda", "float32")
    results = run_job(2, cases, tmp_path)
    assert check_agreement(2, cases, results, rtol=1e-4, atol=1e-6) == len(cases)


def test_is_a_noop_without_process_group() -> None:
    assert not dist.is_initialized()
    student = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(6, 3, dtype=torch.float64)
    for reduction in ("mean", "sum", "none"):
        plain = perception_coherence_loss(student, teacher, backend="reference", reduction=reduction)
        wrapped = perception_coherence_loss(
            student, teacher, backend="reference", reduction=reduction, distributed=True
        )
        torch.testing.assert_close(wrapped, plain, rtol=0, atol=0)


def test_option_validation() -> None:
    with pytest.raises(TypeError, match="distributed must be a bool"):
        pc_kernels.PerceptionCoherenceLoss(distributed="yes")
    with pytest.raises(ValueError, match="rows must be None when distributed=True"):
        pc_kernels.PerceptionCoherenceLoss(distributed=True, rows=(0, 2))
