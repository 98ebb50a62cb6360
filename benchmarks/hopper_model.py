"""Static model of the Triton kernels on Hopper (H100, H200: sm_90), read from the code the compiler produces.

    python -m benchmarks hopper [--out benchmarks/results] [--stride 509] [--docs docs/hopper_model.md]

Compiles every variant of ``pc_kernels.kernels.variants`` for sm_90 (no GPU needed), disassembles it with the tools
in Triton's wheel, counts the main loop's instructions by class and by pipe, and bounds fwd+bwd at n = 4096,
p = q = 256 from below as a multiple of docs/spec.md's floor; measures the sigmoid's error by a numpy emulation of its
float32 instructions (``emulate``; the separable form's: ``emulate_separable``). docs/hopper_model.md states the model,
its assumptions and limits. Writes hopper_model.json and .md into --out, the tables into --docs between its markers.
Runs with TRITON_INTERPRET unset.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import hopper_binned, reports

if TYPE_CHECKING:
    from pc_kernels.kernels.variants import KernelVariant

MARKERS = ("<!-- hopper-model:start -->", "<!-- hopper-model:end -->")
WORKLOAD = {"n": 4096, "p": 256, "q": 256}
# One Hopper SM (H100 SXM and H200 alike): 4 sub-partitions, each issuing one warp instruction per clock.
SMS, SUB_PARTITIONS = 132, 4
CLOCK_HZ = 1.98e9  # boost clock of H100 SXM and H200 (KINDS.md read 1980 MHz on a loaded H200)
SFU_PER_CLOCK_PER_SM = 16  # docs/spec.md's floor: one special-function operation per sigmoid
FLOOR_CLOCKS = 32 * SUB_PARTITIONS / SFU_PER_CLOCK_PER_SM  # a sub-partition's SFU clocks per warp evaluation: 8
LIMITS = {"registers_per_sub_partition": 16384, "register_unit": 256, "max_warps_per_sm": 64,
          "max_blocks_per_sm": 32, "shared_per_sm": 228 * 1024, "shared_unit": 128}  # fmt: skip
# Clocks a warp instruction holds its pipe in a sub-partition: 32 lanes over the pipe's rate per sub-partition, from
# the CUDA C++ Programming Guide's throughput table for compute capability 9.0 (per SM and clock: 128 FP32 add/mul/
# fma; 64 compare/min/max, integer add/logic/shift and IMAD; 64 FP64; 16 special functions and conversions) and,
# for DMMA.MxNxK (M·N·K multiply-adds), the datasheet's FP64 tensor rate (67 TFLOP/s: 128 per clock per SM).
PIPE_CLOCKS = {"sfu": 8, "fma": 1, "alu": 2, "fp64": 2, "conversion": 8}
TENSOR_MACS_PER_CLOCK = 128 // SUB_PARTITIONS
_FMA, _FP32_ALU = {"FADD", "FMUL", "FFMA", "HFMA2", "HADD2", "HMUL2"}, {"FSETP", "FSEL", "FMNMX", "FSET", "FCHK"}
_FP64, _CONVERSION = {"DADD", "DMUL", "DFMA", "DSETP", "DMNMX"}, {"F2F", "F2I", "I2F", "FRND", "F2FP", "I2FP"}
_MEMORY = ("LD", "ST", "ATOM", "RED", "SHFL", "CCTL", "MEMBAR", "FENCE", "SYNCS", "UBLKCP", "UTMA")
_CONTROL = {"BRA", "BRX", "JMP", "CALL", "RET", "EXIT", "BAR", "BSSY", "BSYNC", "WARPSYNC", "NOP", "DEPBAR",
            "YIELD", "BMOV", "KILL", "BPT", "S2R", "S2UR", "CS2R", "ERRBAR", "ELECT", "WARPGROUP"}  # fmt: skip
# Per kernel: what one evaluation is, and the tile constexprs whose product is a program's evaluations per iteration.
EVALUATIONS = {
    "soft_rank_forward": ("sigmoid", ("BLOCK_J", "BLOCK_K")),
    "soft_rank_backward": ("sigmoid slope", ("BLOCK_J", "BLOCK_K")),
    "dissimilarity_forward": ("float64 multiply-add", ("BLOCK_I", "BLOCK_J", "BLOCK_P")),
}
# name, dtype, the rank kernels' form for every row, backward. The accurate float32 sigmoid runs the separable form
# on the rows within its spread (pc_kernels/kernels/separable.py: every row of WORKLOAD), the per-pair form on wider
# rows ("wide_rows": every row beyond it).
PREDICTIONS = (
    ("dense_fwd_bwd_fp32_accurate", "float32", "separable", True),
    ("dense_fwd_bwd_fp32_accurate_wide_rows", "float32", "accurate", True),
    ("dense_fwd_bwd_fp32_fast", "float32", "fast", True),
    ("dense_fwd_fp32_accurate", "float32", "separable", False),
    ("dense_fwd_fp32_fast", "float32", "fast", False),
    ("dense_fwd_bwd_fp64_accurate", "float64", "accurate", True),
)
# The torch pass before each float32 accurate rank launch pair (separable.py's separable_rows), bytes of HBM
# traffic per element of the (rows, w) block: aminmax reads d (4); d − m to float64 (reads 4, writes 8), ·c'
# (8 + 8), exp2 (8 + 8), B to float32 (8 + 4), 1/B (8 + 8), A to float32 (8 + 4), each in place where it can be.
SEPARABLE_PASS_BYTES = 4 + 12 + 16 + 16 + 12 + 16 + 12
# Temperatures at which the share of separable rows of the workload is reported (0.1: the default, the workload's).
SEPARABLE_TAUS = (0.1, 0.05, 0.045, 0.04)
INSTRUCTION = re.compile(r"/\*([0-9a-f]+)\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][\w.]*)([^;]*);")
LABEL, TARGET = re.compile(r"^\s*([.$\w]+):\s*$"), re.compile(r"`\(([^)]+)\)")


class Instruction(NamedTuple):
    """One SASS instruction: address, opcode with modifiers, operands."""

    address: int
    opcode: str
    operands: str


def classify(opcode: str) -> tuple[str, str | None]:
    """(class, pipe) of a SASS opcode: the class for the mix, the pipe it holds (None: only an issue slot)."""
    base = opcode.split(".")[0]
    if base == "MUFU":
        return "special", "sfu"
    if base == "DMMA":
        return "tensor", "tensor"
    if base.endswith("MMA"):
        raise ValueError(f"no rate modelled for tensor instruction {opcode}")
    if base in _FP64 or base in _CONVERSION:
        return ("fp64", "fp64") if base in _FP64 else ("conversion", "conversion")
    if base in _FMA or base in _FP32_ALU:
        return "fp32", "fma" if base in _FMA else "alu"
    if base.startswith(_MEMORY) or base in _CONTROL:
        return "memory" if base.startswith(_MEMORY) else "control", None
    return "integer", None if base.startswith("U") or base == "R2UR" else "alu"  # uniform datapath: issue slot only


def parse_sass(sass: str) -> tuple[list[Instruction], dict[str, int]]:
    """Instructions of an nvdisasm listing and the address of every label."""
    instructions, labels, pending = [], {}, []
    for line in sass.splitlines():
        if label := LABEL.match(line):
            pending.append(label.group(1))
        elif match := INSTRUCTION.search(line):
            address = int(match.group(1), 16)
            labels.update(dict.fromkeys(pending, address))
            pending = []
            instructions.append(Instruction(address, match.group(2), match.group(3)))
    return instructions, labels


def main_loop(instructions: list[Instruction], labels: dict[str, int]) -> list[Instruction]:
    """Body of the innermost loop (range of a backward branch) holding the most special-function or tensor
    instructions: the main loop of a rank or distance kernel."""
    spans = [
        (labels[t.group(1)], i.address)
        for i in instructions
        if i.opcode.split(".")[0] in ("BRA", "JMP") and (t := TARGET.search(i.operands))
        and labels.get(t.group(1), i.address + 1) <= i.address
    ]  # fmt: skip
    bodies = {s: [i for i in instructions if s[0] <= i.address <= s[1]] for s in spans}
    held = {s: sum(classify(i.opcode)[0] in ("special", "tensor") for i in b) for s, b in bodies.items()}
    inner = [s for s in held if held[s] and not any(o != s and held[o] and s[0] <= o[0] <= o[1] <= s[1] for o in held)]
    if not inner:
        raise ValueError("no loop holds a special-function or tensor instruction")
    return bodies[max(inner, key=held.get)]


def count(instructions: list[Instruction]) -> dict[str, dict[str, int]]:
    """Instruction counts by class, and clocks by pipe and of issue (one per instruction)."""
    mix = dict.fromkeys(("special", "fp32", "fp64", "tensor", "conversion", "integer", "memory", "control"), 0)
    clocks = dict.fromkeys((*PIPE_CLOCKS, "tensor", "issue"), 0)
    for ins in instructions:
        kind, pipe = classify(ins.opcode)
        mix[kind] += 1
        clocks["issue"] += 1
        if pipe == "tensor":  # DMMA.MxNxK
            shape = re.search(r"(\d+)x(\d+)x(\d+)", ins.opcode).groups()
            clocks[pipe] += math.prod(map(int, shape)) / TENSOR_MACS_PER_CLOCK
        elif pipe:
            clocks[pipe] += PIPE_CLOCKS[pipe]
    return {"mix": mix, "clocks": clocks}


def occupancy(registers: int, shared: int, warps: int) -> dict[str, object]:
    """Resident blocks per SM, and what limits them, from registers per thread, shared bytes and warps per block."""
    per_warp = math.ceil(registers * 32 / LIMITS["register_unit"]) * LIMITS["register_unit"]
    unit = LIMITS["shared_unit"]
    limits = {
        "registers": SUB_PARTITIONS * (LIMITS["registers_per_sub_partition"] // per_warp) // warps,
        "shared": LIMITS["shared_per_sm"] // (math.ceil(max(shared, 1) / unit) * unit),
        "warps": LIMITS["max_warps_per_sm"] // warps,
        "blocks": LIMITS["max_blocks_per_sm"],
    }
    limiter = min(limits, key=limits.get)
    return {"blocks_per_sm": limits[limiter], "warps_per_sm": limits[limiter] * warps, "limiter": limiter}


def _tool(name: str) -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


class Compiled(NamedTuple):
    """One variant compiled for sm_90: Triton's metadata, the cubin's resources and its SASS."""

    metadata: Any
    registers: int
    stack: int
    shared: int  # Triton's dynamic shared memory + the cubin's (1 KiB reserved)
    instructions: list[Instruction]
    labels: dict[str, int]


def disassemble(variant: KernelVariant) -> Compiled:
    """Compile one variant for sm_90 and read its resources and SASS with the tools in Triton's wheel."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    source = ASTSource(fn=variant.kernel, signature=variant.signature, constexprs=variant.constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=variant.options)
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        usage = _run(_tool("cuobjdump"), "--dump-resource-usage", str(cubin))
        instructions, labels = parse_sass(_run(_tool("nvdisasm"), "-c", str(cubin)))
    registers, stack, static_shared = map(int, re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+)", usage).groups())
    shared = compiled.metadata.shared + static_shared
    return Compiled(compiled.metadata, registers, stack, shared, instructions, labels)


def analyse(variant: KernelVariant) -> dict[str, object]:
    """Compile one variant for sm_90; its resources, occupancy, main loop and bound per evaluation."""
    compiled = disassemble(variant)
    registers, stack, shared, instructions = compiled.registers, compiled.stack, compiled.shared, compiled.instructions
    loop = main_loop(instructions, compiled.labels)
    outside = [i for i in instructions if not loop[0].address <= i.address <= loop[-1].address]
    unit, tile = EVALUATIONS[variant.name.split("/")[0]]
    warps = variant.options["num_warps"]
    evaluations = math.prod(variant.constexprs[c] for c in tile) // (32 * warps)
    record = {
        "name": variant.name, "kernel": compiled.metadata.name, "constexprs": variant.constexprs,
        "options": variant.options, "registers": registers, "stack_bytes": stack,
        "spill_instructions": sum(i.opcode.split(".")[0] in ("LDL", "STL") for i in instructions),
        "shared_bytes": shared, "occupancy": occupancy(registers, shared, warps), "evaluation": unit,
        "evaluations_per_iteration": evaluations, "loop": {"instructions": len(loop), **count(loop)},
        "outside_loop": {"instructions": len(outside), **count(outside)},
        "instructions_per_evaluation": len(loop) / evaluations,
    }  # fmt: skip
    record["special_per_evaluation"] = record["loop"]["mix"]["special"] / evaluations
    record["function"] = variant.kernel.__name__  # the name a GPU profile shows
    if "sigmoid" in unit:  # clocks per warp evaluation over the floor's FLOOR_CLOCKS
        # What a program runs when its row belongs to the other form (soft_rank.py): up to its first EXIT.
        first_exit = next(n for n, i in enumerate(instructions) if i.opcode.split(".")[0] == "EXIT")
        record["exit_path"] = {"instructions": first_exit + 1, **count(instructions[: first_exit + 1])}
        multiple = {k: v / evaluations / FLOOR_CLOCKS for k, v in record["loop"]["clocks"].items()}
        other = max((p for p in multiple if p not in ("sfu", "issue")), key=multiple.get)
        record["floor_multiple"] = {"sfu": multiple["sfu"], "issue": multiple["issue"], "other": multiple[other],
                                    "other_pipe": other, "bound": max(multiple.values())}  # fmt: skip
    return record


def workload(records: dict[str, dict], dtype: str, form: str, backward: bool) -> list[dict[str, object]]:
    """Launches of one loss call on WORKLOAD with soft teacher ranks: the euclidean distances of each side, the soft
    ranks of each side and, with ``backward``, the student's rank gradient, every row in the rank kernels' ``form``;
    programs per launch and main loop iterations per program. The accurate float32 sigmoid launches both rank forms
    after a torch pass (``bytes``), the one whose rows these are not (``skipped``) ending each program at its
    first EXIT."""
    n, distance = WORKLOAD["n"], records[f"dissimilarity_forward/{dtype}/euclidean"]["constexprs"]
    rank = records[f"soft_rank_forward/{dtype}/{form}"]["constexprs"]
    rank_launch = {
        "programs": n * math.ceil((n - 1) / rank["BLOCK_J"]),
        "iterations": math.ceil((n - 1) / rank["BLOCK_K"]),
    }
    launches = [{"variant": f"dissimilarity_forward/{dtype}/euclidean", "launches": 1,
                 "programs": math.ceil(n / distance["BLOCK_I"]) * math.ceil(n / distance["BLOCK_J"]),
                 "iterations": math.ceil(WORKLOAD[side] / distance["BLOCK_P"])} for side in ("p", "q")]  # fmt: skip
    both = dtype == "float32" and form != "fast"
    kernels = ("soft_rank_forward", "soft_rank_backward") if backward else ("soft_rank_forward",)
    for kernel in kernels:
        count = 2 if kernel == "soft_rank_forward" else 1
        if both:
            launches.append({"variant": "torch: separable factors", "launches": count,
                             "bytes": n * (n - 1) * SEPARABLE_PASS_BYTES})  # fmt: skip
        launches.append({"variant": f"{kernel}/{dtype}/{form}", "launches": count, **rank_launch})
        if both:
            other = "accurate" if form == "separable" else "separable"
            launches.append({"variant": f"{kernel}/{dtype}/{other}", "launches": count, **rank_launch,
                             "iterations": 0, "skipped": True})  # fmt: skip
    return launches


def separable_shares(seed: int = 0) -> dict[str, float]:
    """Per τ of SEPARABLE_TAUS, the share of the WORKLOAD's rows (sampled: hopper_binned.sample_rows, float32,
    normalize="row_std") the separable form takes (pc_kernels/kernels/separable.py's separable_rows)."""
    from pc_kernels.kernels.separable import separable_rows

    d = hopper_binned.sample_rows(WORKLOAD["n"], seed)
    std = d.std(dim=1, unbiased=False)
    return {f"{tau:g}": separable_rows(d.float(), (1.0 / (tau * std)).float())[0].double().mean().item()
            for tau in SEPARABLE_TAUS}  # fmt: skip


def launch_clocks(record: dict, launch: dict) -> dict[str, float]:
    """Clocks of each pipe and of issue in one sub-partition over the launches: a wave runs SMS × resident blocks
    programs, whose warps share each SM's sub-partitions; the main loop runs ``iterations`` times, the rest once
    (a skipped program: its exit path)."""
    resident = record["occupancy"]["blocks_per_sm"]
    waves = math.ceil(launch["programs"] / (SMS * resident))
    warps = math.ceil(resident * record["options"]["num_warps"] / SUB_PARTITIONS)
    loop = record["loop"]["clocks"]
    rest = record["exit_path" if launch.get("skipped") else "outside_loop"]["clocks"]
    return {k: launch["launches"] * waves * warps * (loop[k] * launch["iterations"] + rest[k]) for k in loop}


def predict(records: dict[str, dict], name: str, dtype: str, form: str, backward: bool) -> dict[str, object]:
    """Lower bound of one workload's time: per launch the busiest pipe or issue, summed over launches; a torch pass
    its HBM bytes over the H100's bandwidth (the lower of the two chips')."""
    launches = workload(records, dtype, form, backward)
    for launch in launches:
        if "bytes" in launch:
            hbm_ms = 1e3 * launch["launches"] * launch["bytes"] / hopper_binned.BANDWIDTH["H100"]
            launch.update(limiter="hbm", sfu_ms=0.0, issue_ms=0.0, bound_ms=hbm_ms)
            continue
        clocks = launch_clocks(records[launch["variant"]], launch)
        launch["limiter"] = max(clocks, key=clocks.get)
        for key, pipe in (("sfu", "sfu"), ("issue", "issue"), ("bound", launch["limiter"])):
            launch[f"{key}_ms"] = 1e3 * clocks[pipe] / CLOCK_HZ
    n = WORKLOAD["n"]
    evaluations = (3 if backward else 2) * n * (n - 1) * (n - 2)
    floor_ms = 1e3 * evaluations / (SMS * SFU_PER_CLOCK_PER_SM * CLOCK_HZ)
    total = {k: sum(launch[f"{k}_ms"] for launch in launches) for k in ("sfu", "issue", "bound")}
    # Per Triton function (the name a GPU profile shows), so a measured run can check each kernel.
    kernels: dict[str, float] = {}
    for launch in launches:
        if launch["variant"] in records:
            function = records[launch["variant"]]["function"]
            kernels[function] = kernels.get(function, 0.0) + launch["bound_ms"]
    passes = sum(launch["bound_ms"] for launch in launches if "bytes" in launch)
    return {"name": name, **WORKLOAD, "predicted_ms": total["bound"], "sfu_ms": total["sfu"],
            "issue_ms": total["issue"], "torch_pass_ms": passes, "floor_ms": floor_ms, "floor_evaluations":
            evaluations, "multiple": {k: v / floor_ms for k, v in total.items()}, "kernels": kernels,
            "launches": launches}  # fmt: skip


_F32 = np.float32
_TINY = _F32(2.0**-126)
# The accuracy sweep: every stride-th float32 t up to this magnitude, both signs, and ±inf. Beyond it neither form's
# result changes (accurate: E = 2^-|t| flushes to 0 below 2^-126; fast: tanh(t) is ±1 in float64 from |t| ≈ 19).
SWEEP_LIMIT = 128.0
# Random places in a row at which the separable form's error is measured, per argument t.
SEPARABLE_DRAWS = 2


def _flush(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < _TINY, _F32(0), x).astype(_F32)


def _off(x: np.ndarray, ulps: int) -> np.ndarray:
    """x moved by ``ulps`` units in the last place (toward +inf for ulps > 0), zeros and infinities kept."""
    finite = np.isfinite(x) & (x != 0)
    for _ in range(abs(ulps)):
        x = np.where(finite, np.nextafter(x, _F32(np.inf) if ulps > 0 else _F32(-np.inf)), x).astype(_F32)
    return x


def _fma(a: np.ndarray, b: np.ndarray | float, c: np.ndarray | float) -> np.ndarray:
    """float32 a·b + c: the product is exact in float64, the sum rounded twice (rarely an ulp off one rounding)."""
    return (a.astype(np.float64) * np.float64(b) + c).astype(_F32)


def emulate(t: np.ndarray, slope: bool, fast: bool, bias: tuple[int, int] = (0, 0), second: bool = False) -> np.ndarray:
    """σ, or σ' with ``slope``, of float32 arguments ``t`` as ``pc_kernels/kernels/sigmoid.py``'s float32 jit
    functions compute them on sm_90 (t = z·ACCURATE_SCALE, or z·FAST_SCALE with ``fast``): numpy float32 for every
    rounded instruction, and each approximate instruction's result off by ``bias`` times NVIDIA's documented
    maximum error: (ex2.approx 2 ulp or tanh.approx 2^-11 relative, rcp.approx 1 ulp); .ftz results below 2^-126
    flushed to zero. The reciprocal groups four elements in two pairs: element i with element −1−i, and as the other
    pair the elements a third of the way on in t and in reversed t; element i takes the first place of its pair
    (ρ1 = q12·y2), or the second with ``second`` (ρ2 = q12·E1 + q12)."""
    from pc_kernels.kernels.sigmoid import STEP_SCALE

    t = np.asarray(t, dtype=_F32)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if fast:
            tanh = (np.tanh(t.astype(np.float64)) * (1 + bias[0] * 2.0**-11)).astype(_F32)
            return _fma(-(_F32(0.25) * tanh).astype(_F32), tanh, 0.25) if slope else _fma(tanh, 0.5, 0.5)
        e = _flush(_off(np.exp2(-np.abs(t).astype(np.float64)).astype(_F32), 2 * bias[0]))
        partner, third = e[::-1], len(e) // 3
        e1, e2 = (partner, e) if second else (e, partner)  # the element's pair; the other pair is (e3, e4)
        e3, e4 = np.roll(e, third), np.roll(partner, third)
        y2, y4 = (_F32(1) + e2).astype(_F32), (_F32(1) + e4).astype(_F32)
        p12, p34 = _fma(e1, y2, y2), _fma(e3, y4, y4)
        q = _flush(_off((1.0 / (p12 * p34).astype(_F32).astype(np.float64)).astype(_F32), bias[1]))
        q12 = (q * p34).astype(_F32)
        rho = _fma(q12, e1, q12) if second else (q12 * y2).astype(_F32)
        if slope:
            x = (e * rho).astype(_F32)
            return _fma(-x, x, x)
        r = _fma(-e, rho, 1.0)
        h = np.clip((t * _F32(STEP_SCALE.value)).astype(_F32), _F32(0), _F32(1))
        return (np.fmax(e, h) * r).astype(_F32)


def separable_exponents(t: np.ndarray, draw: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 exponents (s_j, s_k), s_j − s_k = t, of the factors A = 2^(−s_j) and B = 2^(s_k) of a separable row
    (pc_kernels/kernels/separable.py) at finite float32 arguments t: s_j = t/2 + u·(S − |t|/2), S = SPREAD_LIMIT/2,
    u uniform in [−1, 1] from a generator seeded with ``draw``, so that |s_j|, |s_k| <= S anywhere in the row."""
    from pc_kernels.kernels.separable import SPREAD_LIMIT

    t = np.asarray(t, dtype=np.float64)
    offset = np.random.default_rng(draw).uniform(-1.0, 1.0, t.shape)
    s_j = t / 2 + offset * (SPREAD_LIMIT / 2 - np.abs(t) / 2)
    return s_j, s_j - t


def _rounded(x: np.ndarray, direction: int) -> np.ndarray:
    """float64 x rounded to float32: to nearest (0), else toward +inf (1) or −inf (−1)."""
    r = x.astype(_F32)
    if direction > 0:
        return np.where(r < x, np.nextafter(r, _F32(np.inf)), r).astype(_F32)
    return np.where(r > x, np.nextafter(r, _F32(-np.inf)), r).astype(_F32) if direction < 0 else r


def emulate_separable(s_j: np.ndarray, s_k: np.ndarray, slope: bool, bias: tuple[int, int] = (0, 0)) -> np.ndarray:
    """σ, or σ' with ``slope``, of the separable form (``separable_sigmoid`` of pc_kernels/kernels/sigmoid.py) as
    sm_90 computes it from the factors A = 2^(−s_j) and B = 2^(s_k) of float64 exponents: both factors rounded to
    float32 to nearest (bias[0] = 0) or both in the direction bias[0] (an error up to 1 ulp where the float64 pass
    rounds within ½ ulp), rcp.approx off by bias[1] times its documented 1 ulp, .ftz results flushed."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        a, b = _rounded(np.exp2(-s_j), bias[0]), _rounded(np.exp2(s_k), bias[0])
        rho = _flush(_off((1.0 / _fma(a, b, 1.0).astype(np.float64)).astype(_F32), bias[1]))
        return ((a * rho).astype(_F32) * (b * rho).astype(_F32)).astype(_F32) if slope else rho


def sweep(stride: int) -> np.ndarray:
    """Every ``stride``-th float32 of magnitude up to SWEEP_LIMIT (subnormals included), both signs, and ±inf."""
    magnitudes = np.arange(0, np.float32(SWEEP_LIMIT).view(np.uint32) + 1, stride, dtype=np.uint32).view(_F32)
    return np.concatenate([magnitudes, -magnitudes, _F32([np.inf, -np.inf])])


def true_sigmoid(t: np.ndarray, fast: bool) -> tuple[np.ndarray, np.ndarray]:
    """float64 σ(z) and σ'(z) at z = t / ACCURATE_SCALE, or z = t / FAST_SCALE with ``fast``: the values the
    sigmoid should return for the argument it is given, from e^(−|z|) = 2^(−|t|) or e^(−2|t|) of the exact t."""
    t = np.asarray(t, dtype=np.float64)
    e = np.exp(-2 * np.abs(t)) if fast else np.exp2(-np.abs(t))
    return np.where(t >= 0, 1 / (1 + e), e / (1 + e)), e / (1 + e) ** 2


def sigmoid_accuracy(stride: int) -> list[dict[str, object]]:
    """Largest error of σ and σ' of each float32 form, by ``emulate``, over ``sweep(stride)`` against
    ``true_sigmoid``: relative where the true value is at least 2^-126, absolute everywhere; the worst over the
    approximate instructions at ± their documented bounds and both places of a reciprocal pair, and with correctly
    rounded results (what the Triton interpreter computes)."""
    t = sweep(stride)
    rows = []
    for form in ("accurate", "fast"):
        truths = dict(zip(("sigmoid", "slope"), true_sigmoid(t, form == "fast"), strict=True))
        for function, truth in truths.items():
            normal = truth >= 2.0**-126
            worst, absolute, nan, rounded = np.zeros(t.shape), 0.0, False, 0.0
            places = (False, True) if form == "accurate" else (False,)  # the fast form has no reciprocal
            for bias, second in itertools.product(((0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)), places):
                got = emulate(t, function == "slope", form == "fast", bias, second).astype(np.float64)
                relative = np.where(normal, np.abs(got - truth) / np.where(normal, truth, 1), 0.0)
                rounded = max(rounded, float(relative.max())) if bias == (0, 0) else rounded
                worst, absolute = np.maximum(worst, relative), max(absolute, float(np.abs(got - truth).max()))
                nan = nan or bool(np.isnan(got).any())
            above = np.abs(t[worst > 1e-6])
            rows.append({"form": form, "function": function, "max_relative_error": float(worst.max()),
                         "at_t": float(t[worst.argmax()]), "max_relative_error_rounded": rounded,
                         "max_absolute_error": absolute, "nan": nan,
                         "first_abs_t_above_1e-6": float(above.min()) if above.size else None})  # fmt: skip
    return rows + separable_accuracy(t[np.isfinite(t)])


def separable_accuracy(t: np.ndarray) -> list[dict[str, object]]:
    """Largest error of σ and σ' of the separable form, by ``emulate_separable``, at the finite arguments ``t`` in
    SEPARABLE_DRAWS random places of a row each (``separable_exponents``), against float64 σ(s_j − s_k): the worst
    over both factors rounded to nearest or both in either direction, rcp.approx at ± its documented bound."""
    rows = []
    for function in ("sigmoid", "slope"):
        worst, absolute, nan, rounded = np.zeros(t.shape), 0.0, False, 0.0
        for draw, bias in itertools.product(range(SEPARABLE_DRAWS), ((0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))):
            s_j, s_k = separable_exponents(t, draw)
            truth = true_sigmoid(s_j - s_k, fast=False)[function == "slope"]
            got = emulate_separable(s_j, s_k, function == "slope", bias).astype(np.float64)
            normal = truth >= 2.0**-126
            relative = np.where(normal, np.abs(got - truth) / np.where(normal, truth, 1), 0.0)
            rounded = max(rounded, float(relative.max())) if bias == (0, 0) else rounded
            worst, absolute = np.maximum(worst, relative), max(absolute, float(np.abs(got - truth).max()))
            nan = nan or bool(np.isnan(got).any())
        above = np.abs(t[worst > 1e-6])
        rows.append({"form": "separable", "function": function, "max_relative_error": float(worst.max()),
                     "at_t": float(t[worst.argmax()]), "max_relative_error_rounded": rounded,
                     "max_absolute_error": absolute, "nan": nan,
                     "first_abs_t_above_1e-6": float(above.min()) if above.size else None})  # fmt: skip
    return rows


def render(result: dict) -> str:
    """Markdown tables of a model result: predictions, variants, sigmoid accuracy."""
    lines = [
        f"Generated by `{result['command']}` (triton {result['triton']}, ptxas {result['ptxas']}, nvdisasm "
        f"{result['nvdisasm']}): sm_90 at "
        f"{CLOCK_HZ / 1e9:.2f} GHz, {SMS} SMs; n = {WORKLOAD['n']}, p = q = {WORKLOAD['p']}, soft teacher ranks. "
        "× = multiple of docs/spec.md's floor at the same clock.",
        "",
        "| prediction | SFU ms | issue ms | torch pass ms | bound ms | floor ms | SFU × | issue × | bound × |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["predictions"]:
        m = r["multiple"]
        lines.append(f"| {r['name']} | {r['sfu_ms']:.1f} | {r['issue_ms']:.1f} | {r['torch_pass_ms']:.1f} | "
                     f"{r['predicted_ms']:.1f} | {r['floor_ms']:.1f} | {m['sfu']:.2f} | {m['issue']:.2f} | "
                     f"**{m['bound']:.2f}** |")  # fmt: skip
    shares = ", ".join(f"{share:.0%} at τ = {tau}" for tau, share in result["separable_rows"].items())
    lines += ["", f"Rows in the separable form (float32 accurate; {hopper_binned.GRID_SAMPLE_ROWS} sampled rows of the "
              f"workload, normalize=\"row_std\"): {shares}. The predictions assume all of them (\"wide_rows\": "
              "none)."]  # fmt: skip
    lines += ["", "| variant | regs | spills (stack B) | shared B | blocks/SM (limit) | loop instr = SF + FP32 + "
              "FP64 + tensor + int + mem + ctrl | evals/iter | instr/eval | SF/eval | SFU × | issue × | other × | "
              "bound × |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["variants"]:
        mix, f = r["loop"]["mix"], r.get("floor_multiple")
        parts = " + ".join(str(mix[k]) for k in ("special", "fp32", "fp64", "tensor", "integer", "memory", "control"))
        multiples = (f"{f['sfu']:.2f} | {f['issue']:.2f} | {f['other']:.2f} ({f['other_pipe']}) | **{f['bound']:.2f}**"
                     if f else "– | – | – | –")  # fmt: skip
        lines.append(
            f"| {r['name']} | {r['registers']} | {r['spill_instructions']} ({r['stack_bytes']}) | "
            f"{r['shared_bytes']} | {r['occupancy']['blocks_per_sm']} ({r['occupancy']['limiter']}) | "
            f"{r['loop']['instructions']} = {parts} | "
            f"{r['evaluations_per_iteration']} | {r['instructions_per_evaluation']:.1f} | "
            f"{r['special_per_evaluation']:.2f} | {multiples} |"
        )
    lines += ["", f"Sigmoid error, float32, of the argument t the sigmoid is given (every {result['sweep_stride']}th "
              f"float32 up to |t| = {result['sweep_limit']:g}, and ±inf) against float64 σ(t / log2 e) (accurate) or "
              "σ(2t) (fast): relative where the true value is at least 2^-126.", "",
              "| form | function | max relative error (at t), documented bounds | same, correctly rounded | "
              "max absolute error | first abs(t) with relative error > 1e-6 |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for a in result["sigmoid_accuracy"]:
        first = a["first_abs_t_above_1e-6"]
        lines.append(f"| {a['form']} | {a['function']} | {a['max_relative_error']:.2g} ({a['at_t']:.4g}) | "
                     f"{a['max_relative_error_rounded']:.2g} | {a['max_absolute_error']:.2g} | "
                     f"{'none' if first is None else f'{first:.3g}'} |")  # fmt: skip
    lines += hopper_binned.render(result["binned"])
    return "\n".join(lines) + "\n"


def model(command: str, stride: int) -> dict[str, object]:
    """Every variant modelled, every workload predicted, the sigmoid's error: the JSON the command stores."""
    import triton
    from triton.backends.nvidia.compiler import get_ptxas_version

    from pc_kernels.kernels.variants import compile_variants

    records = {v.name: analyse(v) for v in compile_variants() if v.name.split("/")[0] in EVALUATIONS}
    machine = {"sms": SMS, "sub_partitions": SUB_PARTITIONS, "clock_hz": CLOCK_HZ, "sfu_per_clock_per_sm":
               SFU_PER_CLOCK_PER_SM, "pipe_clocks_per_warp_instruction": PIPE_CLOCKS,
               "tensor_macs_per_clock_per_sub_partition": TENSOR_MACS_PER_CLOCK, **LIMITS}  # fmt: skip
    return {
        "command": command, "triton": triton.__version__,
        "ptxas": re.search(r"release [\d.]+, V[\d.]+", get_ptxas_version(90)).group(0),  # the one Triton runs for sm_90
        "nvdisasm": re.search(r"release [\d.]+, V[\d.]+", _run(_tool("nvdisasm"), "--version")).group(0),
        "machine": machine, "workload": WORKLOAD, "predictions": [predict(records, *p) for p in PREDICTIONS],
        "variants": list(records.values()), "sweep_stride": stride, "sweep_limit": SWEEP_LIMIT,
        "sigmoid_accuracy": sigmoid_accuracy(stride), "separable_rows": separable_shares(),
        "binned": hopper_binned.model(records),
    }  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Model the kernels; write the results, and the docs tables when asked."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("unset TRITON_INTERPRET: interpreted kernels cannot be compiled for sm_90")
    docs = f" --docs {args.docs}" if args.docs else ""
    command = f"python -m benchmarks hopper --out {args.out}{docs} --stride {args.stride}"
    result = model(command, args.stride)
    table = render(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hopper_model.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "hopper_model.md").write_text("# Hopper (sm_90) model of the Triton kernels\n\n" + table)
    if args.docs:
        args.docs.write_text(reports.replace_block(args.docs.read_text(), table, MARKERS))
    print(table)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``hopper`` subcommand to the benchmark CLI (``python -m benchmarks hopper``)."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = subparsers.add_parser("hopper", help=__doc__.splitlines()[0], description=__doc__, formatter_class=raw)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="default benchmarks/results")
    parser.add_argument("--docs", type=Path, help="markdown file whose hopper-model markers receive the tables (none)")
    parser.add_argument("--stride", type=int, default=509, help="sigmoid error sweep: every STRIDE-th float32 (509)")
    parser.set_defaults(run=run)
