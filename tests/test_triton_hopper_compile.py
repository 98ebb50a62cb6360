"""Every Triton kernel variant compiles for an H100 (sm_90) and fits its shared memory.

The interpreter checks what the kernels compute but not whether they compile for a GPU: a
branch whose return dtype differs from another's, or a tile pipeline that needs more shared
memory than a block may have, only fails there. Triton compiles for a target GPU without one,
so this runs on any machine (in a subprocess, since TRITON_INTERPRET must be unset). The variants
are those of ``pc_kernels.kernels.variants.compile_variants()``, compiled by tests/hopper_compile.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

from pc_kernels.kernels.variants import compile_variants  # noqa: E402

# Largest dynamic shared memory one thread block may use on sm_90 (227 KiB).
HOPPER_SHARED_BYTES = 232448
ROOT = Path(__file__).resolve().parent.parent


def test_every_kernel_variant_compiles_for_hopper_within_shared_memory():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "hopper_compile.py")],
        env=env, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    records = [json.loads(line) for line in result.stdout.splitlines()]
    names = [r["variant"] for r in records]
    assert len(names) == len(set(names))
    assert set(names) == {variant.name for variant in compile_variants()}
    failures = [r for r in records if "error" in r or r["shared"] > HOPPER_SHARED_BYTES]
    assert not failures, json.dumps(failures, indent=1)


def test_the_variants_cover_both_kernels_each_dtype_and_each_kind():
    names = {variant.name for variant in compile_variants()}
    for dtype in ("float32", "float64"):
        assert {f"soft_rank_forward/{dtype}/accurate", f"soft_rank_backward/{dtype}/accurate"} <= names
        assert {f"dissimilarity_forward/{dtype}/{kind}" for kind in ("euclidean", "sqeuclidean", "cosine")} <= names
    for form in ("fast", "separable"):
        assert {f"soft_rank_forward/float32/{form}", f"soft_rank_backward/float32/{form}"} <= names
    for dtype in ("float32", "float64"):
        for where in ("affine", "offsets"):
            assert {f"grid_deposit/{dtype}/{where}/{s}" for s in ("ones", "weighted")} <= names
            assert {f"grid_read/{dtype}/{where}/{s}" for s in ("ranks", "gradient")} <= names
    assert "sign_part" in names
