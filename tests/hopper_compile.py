"""Compile every Triton kernel variant for Hopper (sm_90) without a GPU; print one JSON line each.

Run in a process where TRITON_INTERPRET is unset (under the interpreter, triton.jit returns functions
that cannot be compiled). Each line: {"variant", "shared"} on success, or
{"variant", "error"}. The variants and their launch settings come from ``pc_kernels.kernels.variants``.
"""

from __future__ import annotations

import json

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from pc_kernels.kernels.variants import compile_variants

HOPPER = GPUTarget("cuda", 90, 32)


def main() -> None:
    for variant in compile_variants():
        record: dict[str, object] = {"variant": variant.name}
        try:
            source = ASTSource(fn=variant.kernel, signature=variant.signature, constexprs=variant.constexprs)
            compiled = triton.compile(source, target=HOPPER, options=variant.options)
            record["shared"] = compiled.metadata.shared
        except Exception as error:  # every failure is reported, whatever its type
            record["error"] = f"{type(error).__name__}: {str(error)[:300]}"
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
