"""Distil a frozen teacher into a small student with DDP, ranking over the global batch.

Run on 2 processes (CPU: Gloo; one GPU per process: NCCL):

    torchrun --standalone --nproc_per_node=2 examples/ddp_distillation.py --steps 50

or as one plain process (``distributed=True`` is then a no-op). Each rank draws its own
``--batch-size`` samples per step; the loss ranks all ranks' samples together (global batch of
``world size × batch size``) while each rank computes only its own reference rows. The printed
loss is the loss of that global batch, identical on every rank.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pc_kernels import PerceptionCoherenceLoss


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps (default 50)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per rank per step (default 64)")
    parser.add_argument("--input-dim", type=int, default=32, help="input features (default 32)")
    parser.add_argument("--teacher-dim", type=int, default=128, help="teacher feature size q (default 128)")
    parser.add_argument("--student-dim", type=int, default=16, help="student feature size p (default 16)")
    parser.add_argument("--backend", default="auto", help="pc_kernels backend (default auto)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    return parser.parse_args()


def start_process_group() -> torch.device:
    """Join the torchrun group if launched by torchrun (NCCL with CUDA, else Gloo); the device to use."""
    if "RANK" not in os.environ:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
        return device
    dist.init_process_group("gloo")
    return torch.device("cpu")


def main() -> None:
    args = parse_args()
    device = start_process_group()
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1

    torch.manual_seed(0)  # the same teacher and initial student on every rank
    teacher = nn.Sequential(nn.Linear(args.input_dim, 256), nn.GELU(), nn.Linear(256, args.teacher_dim))
    teacher = teacher.to(device).eval().requires_grad_(False)
    student = nn.Sequential(nn.Linear(args.input_dim, 64), nn.GELU(), nn.Linear(64, args.student_dim)).to(device)
    if world > 1:
        student = DistributedDataParallel(student)
    optimizer = torch.optim.Adam(student.parameters(), lr=args.lr)
    criterion = PerceptionCoherenceLoss(tau=0.1, backend=args.backend, distributed=True)

    data = torch.Generator().manual_seed(1 + rank)  # each rank draws its own samples
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        inputs = torch.randn(args.batch_size, args.input_dim, generator=data).to(device)
        with torch.no_grad():
            target = teacher(inputs)
        loss = criterion(student(inputs), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if rank == 0 and (step == 1 or step % 10 == 0 or step == args.steps):
            global_n = world * args.batch_size
            print(f"step {step:4d}  global-batch loss {loss.item():.5f}  (N = {global_n})", flush=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if rank == 0:
        per_step = (time.perf_counter() - start) / args.steps * 1e3
        print(f"{world} process(es), backend {criterion.last_backend}: {per_step:.1f} ms per step", flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
