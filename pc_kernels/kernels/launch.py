"""Launch settings of every Triton kernel, in one place.

On a GPU the tiles are fixed sizes chosen for Hopper (sm_90): wide enough to keep the special-function
units busy, small enough to stay in registers without spills (``python -m benchmarks hopper`` reads the
compiled code). Under the Triton interpreter (CPU tensors, ``TRITON_INTERPRET=1``) every program costs a
few milliseconds whatever its size, so a rank tile spans a whole row of up to ``INTERPRETER_RANK_BLOCK``
candidates and the distance tiles are the smallest ``tl.dot`` accepts.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

# Soft-rank kernels (forward and backward), per dtype: candidates j per program × candidates k per loop
# step. float64 tiles of 64 × 64 hold 32 doubles of each operand per thread and spill; 32 × 64 do not.
RANK_BLOCKS = {torch.float32: (64, 64), torch.float64: (32, 64)}
RANK_WARPS = 4
# Largest rank tile under the interpreter.
INTERPRETER_RANK_BLOCK = 128

# Grid passes of the binned rank stage: points per deposit or read-back program, nodes per loop step of the
# sign part (one program per row); under the interpreter, small enough that rows of a few hundred points
# and nodes span several programs and steps (tails included).
BINNED_BLOCK, BINNED_NODE_BLOCK, BINNED_WARPS = 512, 512, 4
INTERPRETER_BINNED_BLOCKS = (128, 64)

# Distance kernel: reference rows × candidates per program, features per tl.dot step (float64 tiles).
# Steps of 32 features need 255 registers and spill under Triton 3.6 (the GPU image's version) with
# float32 output; steps of 16 do not, and leave the tile, the occupancy and the work per feature alike.
DISTANCE_BLOCKS = (64, 64, 16)
DISTANCE_WARPS = 4
DISTANCE_STAGES = 2
# tl.dot needs tiles of at least 16 in every dimension.
INTERPRETER_DISTANCE_BLOCKS = (16, 16, 16)


class RankLaunch(NamedTuple):
    """Tile and warp count of the soft-rank kernels for one row width."""

    block_j: int
    block_k: int
    num_warps: int


class BinnedLaunch(NamedTuple):
    """Points per program, nodes per loop step and warp count of the binned grid passes."""

    block: int
    node_block: int
    num_warps: int


class DistanceLaunch(NamedTuple):
    """Tiles, warps and pipelining depth of the distance kernel."""

    block_i: int
    block_j: int
    block_p: int
    num_warps: int
    num_stages: int


def interpreting(x: torch.Tensor) -> bool:
    """Whether kernels on ``x`` run under the Triton interpreter (every non-CUDA tensor)."""
    return x.device.type != "cuda"


def rank_launch(x: torch.Tensor, width: int) -> RankLaunch:
    """Soft-rank kernel settings for rows of ``width`` candidates held in ``x`` (float32 or float64)."""
    if interpreting(x):
        block = min(max(1 << (width - 1).bit_length(), 4), INTERPRETER_RANK_BLOCK)
        return RankLaunch(block, block, 1)
    return RankLaunch(*RANK_BLOCKS[x.dtype], RANK_WARPS)


def binned_launch(x: torch.Tensor, width: int) -> BinnedLaunch:
    """Grid-pass settings for rows of ``width`` points or nodes held in ``x`` (under the interpreter no larger
    than the row's next power of two, at least 16)."""
    if interpreting(x):
        fit = max(1 << (width - 1).bit_length(), 16)
        points, nodes = INTERPRETER_BINNED_BLOCKS
        return BinnedLaunch(min(points, fit), min(nodes, fit), 1)
    return BinnedLaunch(BINNED_BLOCK, BINNED_NODE_BLOCK, BINNED_WARPS)


def distance_launch(x: torch.Tensor) -> DistanceLaunch:
    """Distance kernel settings for features held in ``x``."""
    if interpreting(x):
        return DistanceLaunch(*INTERPRETER_DISTANCE_BLOCKS, 1, 1)
    return DistanceLaunch(*DISTANCE_BLOCKS, DISTANCE_WARPS, DISTANCE_STAGES)
