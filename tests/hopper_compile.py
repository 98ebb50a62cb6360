"""Compile every Triton kernel variant for an H100 (sm_90) without a GPU; print one JSON line each.

Run in a process where TRITON_INTERPRET is unset (under the interpreter, triton.jit returns
functions that cannot be compiled). Each line: {"kernel", "dtype", "constants", "shared"} on
success, or {"kernel", "dtype", "constants", "error"}. The launch settings are the ones the
launchers use on a GPU (GPU_BLOCKS, warps and pipelining stages of the kernel modules).
"""

from __future__ import annotations

import itertools
import json

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from pc_kernels.kernels import dissimilarity, soft_rank

HOPPER = GPUTarget("cuda", 90, 32)
POINTER = {torch.float32: "*fp32", torch.float64: "*fp64"}
FLOAT_SCALARS = {"snap"}


def signature(kernel: triton.JITFunction, dtype: torch.dtype) -> dict[str, str]:
    types = {}
    for param in kernel.params:
        if param.is_constexpr:
            types[param.name] = "constexpr"
        elif param.name.endswith("_ptr"):
            types[param.name] = POINTER[dtype]
        else:
            types[param.name] = "fp32" if param.name in FLOAT_SCALARS else "i32"
    return types


def variants() -> list[tuple[triton.JITFunction, torch.dtype, dict, dict]]:
    """(kernel, dtype, constexpr values, compile options) for every variant a GPU launch can use."""
    out = []
    block_j, block_k = soft_rank.GPU_BLOCKS
    rank_options = {"num_warps": soft_rank.GPU_WARPS}
    block_i, block_c, block_p = dissimilarity.GPU_BLOCKS
    for dtype in (torch.float32, torch.float64):
        fast_flags = (False, True) if dtype == torch.float32 else (False,)
        for hard_a, with_b, hard_b, fast in itertools.product((False, True), (False, True), (False, True), fast_flags):
            if hard_b and not with_b:
                continue
            constants = dict(HARD_A=hard_a, WITH_B=with_b, HARD_B=hard_b, FAST=fast, BLOCK_J=block_j, BLOCK_K=block_k)
            out.append((soft_rank._soft_rank_fwd_kernel, dtype, constants, rank_options))
        for fast in fast_flags:
            constants = dict(FAST=fast, BLOCK_J=block_j, BLOCK_K=block_k)
            out.append((soft_rank._soft_rank_bwd_kernel, dtype, constants, rank_options))
        for kind in dissimilarity.KINDS.values():
            constants = dict(KIND=kind, BLOCK_I=block_i, BLOCK_J=block_c, BLOCK_P=block_p)
            out.append((dissimilarity._dissimilarity_fwd_kernel, dtype, constants, {}))
            constants = dict(KIND=kind, BLOCK_R=block_i, BLOCK_J=block_c, BLOCK_P=dissimilarity.GPU_BACKWARD_MAX_BLOCK_P)
            options = {"num_stages": dissimilarity.GPU_BACKWARD_STAGES[dtype]}
            out.append((dissimilarity._dissimilarity_bwd_kernel, dtype, constants, options))
    return out


def main() -> None:
    for kernel, dtype, constants, options in variants():
        record = {"kernel": kernel.__name__, "dtype": str(dtype), "constants": constants}
        try:
            source = ASTSource(fn=kernel, signature=signature(kernel, dtype), constexprs=constants)
            compiled = triton.compile(source, target=HOPPER, options=options)
            record["shared"] = compiled.metadata.shared
        except Exception as error:  # every failure is reported, whatever its type
            record["error"] = f"{type(error).__name__}: {str(error)[:300]}"
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
