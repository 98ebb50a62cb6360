"""Every compile variant of the Triton kernels a GPU launch can use, with its argument types.

Read by the offline Hopper (sm_90) compile test and by the static model of the compiled code
(``python -m benchmarks hopper``): both compile each variant for a GPU without needing one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton

from . import launch
from .binned_grid import _grid_deposit_kernel, _grid_read_kernel, _sign_part_kernel
from .dissimilarity import _dissimilarity_fwd_kernel
from .soft_rank import _soft_rank_bwd_kernel, _soft_rank_fwd_kernel

_POINTER = {"float32": "*fp32", "float64": "*fp64"}
DISTANCE_KINDS = ("euclidean", "sqeuclidean", "cosine")


class KernelVariant(NamedTuple):
    """One compilable kernel: its name, the JIT function, argument types, constexpr values and options."""

    name: str
    kernel: triton.runtime.JITFunction
    signature: dict[str, str]
    constexprs: dict[str, object]
    options: dict[str, int]


def _rank_variants(dtype: str) -> list[KernelVariant]:
    pointer = _POINTER[dtype]
    block_j, block_k = launch.RANK_BLOCKS[getattr(torch, dtype)]
    blocks = {"BLOCK_J": block_j, "BLOCK_K": block_k}
    options = {"num_warps": launch.RANK_WARPS}
    rows = {"d_ptr": pointer, "factor_ptr": pointer, "separable_ptr": "*i8", "a_ptr": pointer, "b_ptr": pointer}
    forward = {**rows, "ranks_ptr": pointer, "w": "i32"}
    backward = {**rows, "grad_ranks_ptr": pointer, "out_ptr": pointer, "w": "i32"}
    # The forms (soft_rank.py): per pair; float32 also the fast sigmoid and the separable exponential.
    forms = {"accurate": (False, False), "fast": (True, False), "separable": (False, True)}
    out = []
    for form, (fast, separable) in forms.items() if dtype == "float32" else [("accurate", (False, False))]:
        for name, kernel, signature in (
            ("soft_rank_forward", _soft_rank_fwd_kernel, forward),
            ("soft_rank_backward", _soft_rank_bwd_kernel, backward),
        ):
            constexprs: dict[str, object] = {"FAST": fast, "SEPARABLE": separable, **blocks}
            out.append(KernelVariant(f"{name}/{dtype}/{form}", kernel, signature, constexprs, options))
    return out


def _distance_variants(dtype: str) -> list[KernelVariant]:
    block_i, block_j, block_p = launch.DISTANCE_BLOCKS
    signature = {
        "x_ptr": "*fp64", "norm_ptr": "*fp64", "out_ptr": _POINTER[dtype],
        "n": "i32", "p": "i32", "row_start": "i32", "row_end": "i32", "snap": "fp32",
    }  # fmt: skip
    options = {"num_warps": launch.DISTANCE_WARPS, "num_stages": launch.DISTANCE_STAGES}
    return [
        KernelVariant(
            f"dissimilarity_forward/{dtype}/{kind}",
            _dissimilarity_fwd_kernel,
            signature,
            {"KIND": kind, "BLOCK_I": block_i, "BLOCK_J": block_j, "BLOCK_P": block_p},
            options,
        )
        for kind in DISTANCE_KINDS
    ]


def _grid_variants(dtype: str) -> list[KernelVariant]:
    """The binned grid passes for rows d of ``dtype``: positions from d (affine) or from float64 gap-closed
    offsets; an unused pointer argument is passed the positions (``binned_grid.py``), so it has their type."""
    pointer = _POINTER[dtype]
    options = {"num_warps": launch.BINNED_WARPS}
    out = []
    for affine in (True, False):
        points = pointer if affine else "*fp64"
        geometry = {"points_ptr": points, "low_ptr": "*fp64", "per_node_ptr": "*fp64"}
        where = "affine" if affine else "offsets"
        for second in (False, True):
            weights = pointer if second else points
            deposit = {**geometry, "weights_ptr": weights, "scale_ptr": "*fp64", "fixed_ptr": "*i64",
                       "m": "i32", "w": "i32", "nodes": "i32"}  # fmt: skip
            read = {**geometry, "values_ptr": "*fp64", "weights_ptr": weights, "out_ptr": pointer,
                    "m": "i32", "w": "i32", "nodes": "i32", "length": "i32"}  # fmt: skip
            constexprs = {"AFFINE": affine, "BLOCK": launch.BINNED_BLOCK}
            out += [
                KernelVariant(f"grid_deposit/{dtype}/{where}/{'weighted' if second else 'ones'}", _grid_deposit_kernel,
                              deposit, {**constexprs, "WEIGHTED": second}, options),
                KernelVariant(f"grid_read/{dtype}/{where}/{'gradient' if second else 'ranks'}", _grid_read_kernel,
                              read, {**constexprs, "GRADIENT": second}, options),
            ]  # fmt: skip
    return out


def _sign_part_variant() -> KernelVariant:
    signature = {"fixed_ptr": "*i64", "scale_ptr": "*fp64", "values_ptr": "*fp64", "nodes": "i32", "length": "i32"}
    constexprs: dict[str, object] = {"NODE_BLOCK": launch.BINNED_NODE_BLOCK}
    return KernelVariant("sign_part", _sign_part_kernel, signature, constexprs, {"num_warps": launch.BINNED_WARPS})


def binned_variants() -> list[KernelVariant]:
    """Every variant of the binned rank stage's grid kernels, for float32 and float64 rows."""
    return [*_grid_variants("float32"), *_grid_variants("float64"), _sign_part_variant()]


def compile_variants() -> list[KernelVariant]:
    """Every kernel variant the launchers can run on a GPU, for float32 and float64 outputs."""
    dense = [v for dtype in ("float32", "float64") for v in (*_rank_variants(dtype), *_distance_variants(dtype))]
    return [*dense, *binned_variants()]
