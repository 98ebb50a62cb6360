"""The execution plan: how one call runs, resolved once from the options, the device and the environment.

A computation path is a (dissimilarity stage, rank stage) pair run by ``pc_kernels.pipeline``:

    backend      algorithm   dissimilarity stage    rank stage
    "torch"      "dense"     torch (Gram form)      dense torch (chunked tanh)
    "torch"      "binned"    torch (Gram form)      binned (grid + FFT)
    "triton"     "dense"     triton kernel          fused triton kernels
    "triton"     "binned"    triton kernel          binned, grid passes in Triton kernels (grid + cuFFT)
    "reference"  "dense"     the plain-autograd oracle (``pc_kernels.reference``)

``resolve_plan`` also fixes the pipeline's blocks of reference rows, the dense torch stage's tile,
what the forward keeps for the backward (or each block recomputed in it), the sigmoid flavour
and the reference's memory limit. This module is the only code of the loss that reads environment variables:

    PC_KERNELS_TORCH_WORKSPACE_BYTES    workspace of the dense torch rank stage (default: 8 MiB on CPU,
                                        512 MiB on CUDA)
    PC_KERNELS_REFERENCE_MEMORY_LIMIT   largest n³ working memory of backend="reference" (default 4 GiB)
    PC_KERNELS_FAST_SIGMOID=1           tanh.approx sigmoid in the Triton rank stage (float32 CUDA)
    PC_KERNELS_CPU_LOOPS=torch          plain torch operations on CPU even when numba is installed
                                        (default: numba's compiled loops where a stage has them)
    TRITON_INTERPRET=1                  the Triton backend may run on CPU tensors, under the interpreter
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .options import BACKENDS, LossOptions
from .stages.dense_ranks import strip_width

# Installed, looked up without importing them (importing triton is slow and must follow TRITON_INTERPRET).
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None
_NUMBA_INSTALLED = importlib.util.find_spec("numba") is not None
# The oldest Triton the kernels are written and tested for (tl.dot's out_dtype, knobs, inline PTX packing).
TRITON_MINIMUM = (3, 6)


def _triton_version() -> str | None:
    """The installed triton's version ("triton", or the "pytorch-triton" of nightly torch builds); None when
    its metadata is missing."""
    for distribution in ("triton", "pytorch-triton"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(distribution)
    return None


def _too_old(version: str | None) -> bool:
    numbers = re.match(r"(\d+)\.(\d+)", version or "")
    return numbers is not None and (int(numbers[1]), int(numbers[2])) < TRITON_MINIMUM


_TRITON_VERSION = _triton_version() if _TRITON_INSTALLED else None

WORKSPACE_BYTES = {"cpu": 8 * 2**20, "cuda": 512 * 2**20}
# Temporaries of one pipeline block: small on CPU, where blocks that stay in cache are fastest.
BLOCK_BYTES = {"cpu": 128 * 2**20, "cuda": 2 * 2**30}
# What the forward may keep for the backward: both sides' ranks (else, with algorithm="binned", the backward
# recomputes them), then the student's dissimilarities (else the backward recomputes them). On CPU a share
# of the machine's memory, on CUDA a fixed budget (the device's memory is the model's too).
KEPT_MEMORY_SHARE = 0.4
KEPT_BYTES = {"cuda": 24 * 2**30}
# Read once: torch.compile cannot trace os.sysconf inside a call.
_PHYSICAL_MEMORY = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
REFERENCE_MEMORY_BYTES = 4 * 2**30
_OTHER_DEVICE_BYTES = 128 * 2**20
# (rows, n)-sized float64 temporaries one block row of the pipeline holds at once, both sides.
_BLOCK_TEMPORARIES = 12
# The reference's (n, n, n) tensors (reference.ranks_from_scaled), in bytes per n³ for an itemsize s: one
# rank matrix holds at its peak z, σ(z) (or the Heaviside terms), the bool mask k_valid, the mask cast to
# the dtype for the product, and the product: 4s + 1; autograd keeps σ(z) and the mask of every soft rank
# matrix built before the last (s + 1 each). A hard rank matrix has the same peak: it builds the same
# tensors, without gradient. The backward's temporaries (the mask cast again, σ' and the gradient of z)
# stay below the forward's peak. CPU allocators keep freed blocks of that size for reuse (glibc: below its
# 32 MiB mmap threshold), so the process grows by up to REFERENCE_ALLOCATOR_SLACK times the live peak
# (measured: fwd+bwd of every option combination at n = 140, float32 and float64, tests/test_memory.py).
REFERENCE_ALLOCATOR_SLACK = 2.5


def reference_memory_bytes(n: int, features: int, dtype: torch.dtype, rank_matrices: int) -> int:
    """The memory backend="reference" may need for ``rank_matrices`` (n, n) rank matrices of n samples with at
    most ``features`` features, in ``dtype`` (see the comment above); (n, n, features) differences otherwise."""
    s = torch.finfo(dtype).bits // 8
    cubes = 0 if rank_matrices == 0 else (rank_matrices - 1) * (s + 1) + 4 * s + 1
    return int(REFERENCE_ALLOCATOR_SLACK * max(cubes * n**3, 2 * n * n * features * 8))


def _bytes_setting(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    if value is None:
        return default
    # ASCII digits only: str.isdigit and int() also take other scripts' digits ("²", "٣"), which int() refuses
    # or reads as a number nobody typed.
    if re.fullmatch("[0-9]+", value) is None or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer (bytes, in the ASCII digits 0-9); got {value!r}")
    return int(value)


def triton_usable(device: torch.device, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Triton kernels can run on tensors of ``device``: CUDA with triton >= 3.6 installed, or CPU
    under the Triton interpreter (TRITON_INTERPRET=1, set before triton is first imported). Whether a GPU
    is present is not checked here: a CUDA tensor's existence says so."""
    if not _TRITON_INSTALLED or _too_old(_TRITON_VERSION):
        return False
    return device.type == "cuda" or (device.type == "cpu" and environ.get("TRITON_INTERPRET") == "1")


def _minimum() -> str:
    return ".".join(map(str, TRITON_MINIMUM))


def _triton_missing() -> str:
    if not _TRITON_INSTALLED:
        return "triton is not installed"
    return f"the installed triton {_TRITON_VERSION} is older than {_minimum()}"


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """The backend names this installation can run on tensors of ``device`` (besides "auto"). Whether
    such tensors can exist here (a GPU for "cuda") is not checked.

    Args:
        device: a ``torch.device`` or device string such as "cpu" or "cuda:0". Default "cpu".

    Returns:
        A sublist of ["reference", "torch", "triton"]: "triton" needs CUDA tensors and triton >= 3.6
        installed (or, for CPU tensors, the Triton interpreter: TRITON_INTERPRET=1 set before triton is imported).

    Raises:
        RuntimeError: ``device`` is not a valid device string.
    """
    names = ["reference", "torch"]
    if triton_usable(torch.device(device)):
        names.append("triton")
    return names


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The backend that ``backend`` means for tensors on ``device``.

    Args:
        backend: "auto", "reference", "torch" or "triton".
        device: a ``torch.device`` or device string.

    Returns:
        "reference", "torch" or "triton". "auto" is "triton" for CUDA tensors when Triton is installed,
        else "torch" (with a warning on CUDA, naming what to install); explicit names are returned as they
        are once checked to be usable.

    Raises:
        ValueError: ``backend`` is not one of "auto", "reference", "torch", "triton".
        RuntimeError: backend="triton" on a device where Triton cannot run (the message names what to
            install or set), or ``device`` is not a valid device string (torch's message).
    """
    return _backend_for(backend, torch.device(device), os.environ)


def _backend_for(backend: str, device: torch.device, environ: Mapping[str, str]) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}; got {backend!r}")
    usable = triton_usable(device, environ)
    if backend == "auto":
        if usable:
            return "triton" if device.type == "cuda" else "torch"
        if device.type == "cuda":
            warnings.warn(
                f"pc_kernels: {_triton_missing()}, so backend='auto' uses the slower torch backend on CUDA; "
                f"`pip install 'triton>={_minimum()}'` (CUDA builds of torch usually bring it) for the fused kernels",
                stacklevel=4,
            )
        return "torch"
    if backend == "triton" and not usable:
        if device.type == "cuda":
            raise RuntimeError(
                f"backend='triton' needs triton >= {_minimum()} ({_triton_missing()}): "
                f"`pip install 'triton>={_minimum()}'`, or use backend='torch'"
            )
        raise RuntimeError(
            f"backend='triton' runs on CUDA tensors; got tensors on {device} (for CPU tensors the Triton "
            "interpreter runs it when TRITON_INTERPRET=1 is set before triton is imported, for testing); "
            "use backend='torch' or backend='auto'"
        )
    return backend


@dataclass(frozen=True)
class ExecutionPlan:
    """How one call runs (see the module docstring); ``PerceptionCoherenceLoss.last_plan`` keeps the last.

    Attributes:
        backend: "reference", "torch" or "triton" (what "auto" resolved to).
        algorithm: "dense" or "binned" (what "auto" resolved to, by AUTO_BINNED_FROM).
        distance_stage: "torch", "triton" or "reference".
        rank_stage: "dense", "triton", "binned", "triton_binned" (the binned stage's grid passes as Triton
            kernels) or "reference".
        rows: the reference rows [start, end) computed.
        block_rows: reference rows the pipeline runs through all stages at once (``chunk_rows`` as given; the
            pipeline rounds it up to whole tiles of ``stages.distances.GRAM_ROWS`` rows).
        tile_rows: rows per tile of the dense torch rank stage's workspace.
        keep_ranks: whether the forward keeps both sides' ranks for the backward (always for the dense
            algorithm; for the binned one within the memory budget, else the backward recomputes them).
        keep_distances: whether it also keeps the student's dissimilarities (within the budget).
        fast_sigmoid: the tanh.approx sigmoid of the Triton rank stage.
        bins: grid nodes per row of algorithm="binned" (None: automatic).
        loops: "numba" (CPU tensors with numba installed: compiled loops for the distance epilogue and
            backward weights and the binned grid) or "torch".
    """

    backend: str
    algorithm: str
    distance_stage: str
    rank_stage: str
    rows: tuple[int, int]
    block_rows: int
    tile_rows: int
    keep_ranks: bool
    keep_distances: bool
    fast_sigmoid: bool
    bins: int | None
    loops: str

    def describe(self) -> str:
        """A one-line summary, e.g. for logs."""
        start, end = self.rows
        return (
            f"backend={self.backend!r} algorithm={self.algorithm!r} stages={self.distance_stage}+{self.rank_stage} "
            f"rows=[{start}, {end}) block_rows={self.block_rows} keep_ranks={self.keep_ranks} "
            f"keep_distances={self.keep_distances} "
            f"fast_sigmoid={self.fast_sigmoid} loops={self.loops}"
        )


def _reference_plan(
    options: LossOptions, n: int, d: int, dtype: torch.dtype, soft_sides: int, environ: Mapping[str, str]
) -> ExecutionPlan:
    # A loss with hard teacher ranks ranks one side softly and builds the teacher's rank matrix as well.
    rank_matrices = soft_sides + (soft_sides == 1 and options.teacher_ranks == "hard")
    need = reference_memory_bytes(n, d, dtype, rank_matrices)
    limit = _bytes_setting(environ, "PC_KERNELS_REFERENCE_MEMORY_LIMIT", REFERENCE_MEMORY_BYTES)
    if need > limit:
        raise ValueError(
            f"backend='reference' would need about {need / 2**30:.2f} GiB of n³ working memory for n = {n}, above "
            f"its limit of {limit / 2**30:.2f} GiB (PC_KERNELS_REFERENCE_MEMORY_LIMIT); use backend='torch' "
            "(any device) or backend='triton' (CUDA), which never build n³ tensors"
        )
    rows = options.row_range(n)
    return ExecutionPlan(
        "reference", "dense", "reference", "reference", rows, rows[1] - rows[0], 1, True, True, False, None, "torch"
    )


def resolve_plan(
    options: LossOptions,
    device: torch.device,
    n: int,
    features: int,
    dtype: torch.dtype,
    soft_sides: int,
    environ: Mapping[str, str] = os.environ,
) -> ExecutionPlan:
    """The plan for validated ``options`` on a batch of n samples with at most ``features`` features
    per sample, of computation ``dtype`` on ``device``, ranking ``soft_sides`` feature sets softly (2 for
    a loss with soft teacher ranks, 1 with hard ones or for one rank matrix, 0 for distances only).

    Raises:
        ValueError: the reference backend's memory limit is exceeded, ``rows`` ends beyond n, or an
            environment variable above holds something other than a positive integer.
        RuntimeError: backend="triton" cannot run on ``device`` (see ``resolve_backend``).
    """
    backend = _backend_for(options.backend, device, environ)
    if backend == "reference":
        return _reference_plan(options, n, features, dtype, soft_sides, environ)
    start, end = options.row_range(n)
    itemsize = torch.finfo(dtype).bits // 8
    w = n - 1
    if options.chunk_rows is not None:
        block_rows = options.chunk_rows
    else:
        budget = BLOCK_BYTES.get(device.type, _OTHER_DEVICE_BYTES)
        block_rows = max(1, budget // (_BLOCK_TEMPORARIES * 8 * n))
    block_rows = min(block_rows, end - start)
    workspace = _bytes_setting(
        environ, "PC_KERNELS_TORCH_WORKSPACE_BYTES", WORKSPACE_BYTES.get(device.type, _OTHER_DEVICE_BYTES)
    )
    tile_rows = max(1, workspace // (strip_width(w) * w * itemsize))
    loops = _loops(device, environ)
    algorithm = _algorithm_for(options.algorithm, device, n, loops) if soft_sides else "dense"
    binned = algorithm == "binned"
    matrix = (end - start) * w * itemsize
    budget = _kept_bytes(device)
    keep_ranks = not binned or 2 * matrix <= budget
    keep_distances = keep_ranks and 3 * matrix <= budget
    fast = backend == "triton" and device.type == "cuda" and dtype == torch.float32
    return ExecutionPlan(
        backend=backend,
        algorithm=algorithm,
        distance_stage=backend,
        rank_stage=_rank_stage(backend, binned),
        rows=(start, end),
        block_rows=block_rows,
        tile_rows=tile_rows,
        keep_ranks=keep_ranks,
        keep_distances=keep_distances,
        fast_sigmoid=fast and environ.get("PC_KERNELS_FAST_SIGMOID") == "1",
        bins=options.bins,
        loops=loops,
    )


# algorithm="auto": the smallest n from which it runs "binned" (below it "dense": exact, and as fast), per
# device class, as torch.cdist switches its method by size. CPU: measured, fwd+bwd of both side by side
# (docs/troubleshooting.md, "Which algorithm"); CUDA: a prediction from the Hopper model of the dense
# Triton kernels (docs/hopper_model.md), not a measurement.
AUTO_BINNED_FROM = {"cpu-numba": 128, "cpu-torch": 192, "cuda": 2048}


def auto_device_class(device: torch.device, loops: str) -> str:
    """The key of AUTO_BINNED_FROM for tensors on ``device`` with CPU ``loops``: "cpu-numba", "cpu-torch"
    or, for every other device, "cuda"."""
    return f"cpu-{loops}" if device.type == "cpu" else "cuda"


def _algorithm_for(algorithm: str, device: torch.device, n: int, loops: str) -> str:
    """What ``algorithm`` means for a batch of n samples: "dense" or "binned" (the same in every process
    of a distributed loss, where n is the global batch's)."""
    if algorithm != "auto":
        return algorithm
    return "binned" if n >= AUTO_BINNED_FROM[auto_device_class(device, loops)] else "dense"


def _rank_stage(backend: str, binned: bool) -> str:
    """The rank stage of a fast path: the backend's own kernels for either algorithm."""
    if binned:
        return "triton_binned" if backend == "triton" else "binned"
    return "triton" if backend == "triton" else "dense"


def _kept_bytes(device: torch.device) -> int:
    """The budget for what the forward keeps for the backward on ``device`` (KEPT_BYTES, or on CPU a
    KEPT_MEMORY_SHARE of the machine's physical memory)."""
    if device.type == "cpu":
        return int(KEPT_MEMORY_SHARE * _PHYSICAL_MEMORY)
    return KEPT_BYTES.get(device.type, _OTHER_DEVICE_BYTES)


def _loops(device: torch.device, environ: Mapping[str, str]) -> str:
    choice = environ.get("PC_KERNELS_CPU_LOOPS", "numba")
    if choice not in ("numba", "torch"):
        raise ValueError(f"PC_KERNELS_CPU_LOOPS must be 'numba' or 'torch'; got {choice!r}")
    return "numba" if choice == "numba" and device.type == "cpu" and _NUMBA_INSTALLED else "torch"
