"""Static Hopper (sm_90) model of ``algorithm="binned"`` on the triton backend: the grid kernels read from their
compiled code, and a predicted fwd+bwd time at n = 16384 and 65536 against the HBM-bandwidth floor.

Part of ``python -m benchmarks hopper`` (``hopper_model.py`` compiles and disassembles; this module reads the
binned kernels' SASS and builds the workload). Per grid kernel variant, from the SASS: instructions, clocks of
each pipe and global-memory bytes (LDG, STG, REDG: 32 lanes × access width) per point, i.e. per candidate pair,
and integer atomics per pair. Per workload, each launch takes the longer of its issue/pipe clocks (as the dense
model counts them) and its HBM bytes over the bandwidth; the FFT between the kernels is cuFFT's, not compiled
here, so its time is an estimate from the bytes it moves (``FFT_BYTES``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import hopper_model as hm

if TYPE_CHECKING:
    import torch

    from pc_kernels.kernels.variants import KernelVariant

# HBM bandwidth by the vendor's datasheets (/work/.library/device: H100 SXM 80 GB HBM3 3.35 TB/s; H200 141 GB
# HBM3e 4.8 TB/s); both chips share the SM count and clock of hopper_model.py.
BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12}
SIZES = (16384, 65536)
TARGET_MS = {16384: 50.0, 65536: 1000.0}
# The workload: Gaussian features, p = q = 256, euclidean, normalize="row_std", tau = 0.1, soft teacher ranks,
# float32, gradient for the student; GRID_SAMPLE_ROWS reference rows give the grid's node count.
FEATURES, TAU, GRID_SAMPLE_ROWS, ITEMSIZE = 256, 0.1, 64, 4
# cuFFT estimate, bytes per set and row (nodes N, FFT length L, float64): the int64 masses zeroed (8 N), turned
# into float64 and divided by their scale (two passes, 32 N); rfft (reads 8 L, writes 16 (L/2 + 1)); the product
# with the spectrum (reads and writes 16 (L/2 + 1)); irfft (reads 16 (L/2 + 1), writes 8 L): one pass per
# transform, as cuFFT makes for lengths that fit its shared-memory kernels.
FFT_NODE_BYTES, FFT_LENGTH_BYTES = 40, 48
_GLOBAL = ("LDG", "STG", "REDG", "ATOMG", "RED", "ATOM")
_WIDTH = ((".128", 16), (".64", 8), (".U16", 2), (".S16", 2), (".U8", 1), (".S8", 1))


def access_bytes(opcode: str) -> int:
    """Bytes one lane moves with a global-memory instruction (4 unless the opcode names a width)."""
    return next((width for suffix, width in _WIDTH if suffix in opcode), 4)


def _loops(compiled: hm.Compiled) -> tuple[list[hm.Instruction], list[hm.Instruction]]:
    """(instructions inside a loop, instructions outside every loop): loops are backward branches' ranges."""
    spans = [
        (compiled.labels[t.group(1)], i.address)
        for i in compiled.instructions
        if i.opcode.split(".")[0] in ("BRA", "JMP") and (t := hm.TARGET.search(i.operands))
        and compiled.labels.get(t.group(1), i.address) < i.address  # the trailing self-branch is no loop
    ]  # fmt: skip
    inside = [i for i in compiled.instructions if any(a <= i.address <= b for a, b in spans)]
    outside = [i for i in compiled.instructions if not any(a <= i.address <= b for a, b in spans)]
    return inside, outside


def analyse(variant: KernelVariant) -> dict[str, object]:
    """One grid kernel variant on sm_90: resources, occupancy, counts per program and per point (per node for
    the sign part, whose loops step NODE_BLOCK nodes)."""
    compiled = hm.disassemble(variant)
    inside, outside = _loops(compiled)
    warps = variant.options["num_warps"]
    per_warp = variant.constexprs.get("BLOCK", variant.constexprs.get("NODE_BLOCK")) // warps
    looped = bool(inside)
    body = inside if looped else outside
    memory = [i for i in body if i.opcode.split(".")[0] in _GLOBAL]
    counts = hm.count(body)
    return {
        "name": variant.name, "function": variant.kernel.__name__, "constexprs": variant.constexprs,
        "options": variant.options, "registers": compiled.registers, "stack_bytes": compiled.stack,
        "spill_instructions": sum(i.opcode.split(".")[0] in ("LDL", "STL") for i in compiled.instructions),
        "shared_bytes": compiled.shared, "occupancy": hm.occupancy(compiled.registers, compiled.shared, warps),
        "per": "node" if looped else "point", "items_per_warp": per_warp,
        "loop": {"instructions": len(inside), **hm.count(inside)},
        "outside_loop": {"instructions": len(outside), **hm.count(outside)},
        "instructions_per_item": 32 * len(body) / per_warp,
        "global_bytes_per_item": 32 * sum(access_bytes(i.opcode) for i in memory) / per_warp,
        "atomics_per_item": 32 * sum(i.opcode.startswith(("REDG", "ATOMG", "RED", "ATOM")) for i in memory) / per_warp,
        "clocks_per_item": {k: v / per_warp for k, v in counts["clocks"].items()},
    }  # fmt: skip


def grid_geometry(n: int, seed: int = 0) -> dict[str, int]:
    """Nodes per row and FFT length of the automatic grid for the workload's rows at batch size n, from
    GRID_SAMPLE_ROWS reference rows of Gaussian features (the grid of a block is that of its widest row)."""
    from pc_kernels.stages.binned_ranks import Grid

    d = sample_rows(n, seed)
    grid = Grid(d, 1.0 / (TAU * d.std(dim=1, unbiased=False)), None)
    return {"nodes": grid.nodes, "length": grid.length}


def sample_rows(n: int, seed: int = 0) -> torch.Tensor:
    """(GRID_SAMPLE_ROWS, n − 1) float64: the euclidean candidate rows of the first reference samples of n Gaussian
    samples of FEATURES features."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=generator, dtype=torch.float64)
    d = torch.cdist(x[:GRID_SAMPLE_ROWS], x)
    keep = torch.ones_like(d, dtype=torch.bool)
    keep[torch.arange(GRID_SAMPLE_ROWS), torch.arange(GRID_SAMPLE_ROWS)] = False
    return d[keep].view(GRID_SAMPLE_ROWS, n - 1)


def _plan(n: int) -> dict[str, bool]:
    """What the forward keeps for the backward on CUDA (pc_kernels/plan.py's rule and budget)."""
    from pc_kernels import plan

    matrix = n * (n - 1) * ITEMSIZE
    budget = plan.KEPT_BYTES["cuda"]
    return {"keep_ranks": 2 * matrix <= budget, "keep_distances": 2 * matrix <= budget and 3 * matrix <= budget}


def _kernel_launch(record: dict, name: str, count: int, programs: int, iterations: int, hbm_bytes: float) -> dict:
    clocks = hm.launch_clocks(record, {"launches": count, "programs": programs, "iterations": iterations})
    limiter = max(clocks, key=clocks.get)
    return {"name": name, "variant": record["name"], "launches": count,
            "compute_ms": 1e3 * clocks[limiter] / hm.CLOCK_HZ, "compute_limiter": limiter,
            "hbm_bytes": count * hbm_bytes}  # fmt: skip


def workload(binned: dict[str, dict], dense: dict[str, dict], n: int, geometry: dict[str, int]) -> list[dict]:
    """Launches of one fwd+bwd loss call at batch size n (module docstring's workload), all rows in one block
    per launch: each with its compute time (ms) and the HBM bytes it must move."""
    w, nodes, length = n - 1, geometry["nodes"], geometry["length"]
    kept = _plan(n)
    pairs = n * w
    deposit, read = binned["grid_deposit/float32/affine/ones"], binned["grid_read/float32/affine/ranks"]
    weighted, gradient = binned["grid_deposit/float32/affine/weighted"], binned["grid_read/float32/affine/gradient"]
    sign, distance = binned["sign_part"], dense["dissimilarity_forward/float32/euclidean"]
    point_programs = n * math.ceil(w / deposit["constexprs"]["BLOCK"])
    node_steps = math.ceil(nodes / sign["constexprs"]["NODE_BLOCK"])
    tile = distance["constexprs"]
    distance_programs = math.ceil(n / tile["BLOCK_I"]) * math.ceil(n / tile["BLOCK_J"])
    distance_steps = math.ceil(FEATURES / tile["BLOCK_P"])
    grid_bytes = n * nodes * 8  # one set's int64 masses written back from L2

    def ranks(count: int) -> list[dict]:
        return [
            _kernel_launch(deposit, "deposit", count, point_programs, 0, pairs * ITEMSIZE + grid_bytes),
            {"name": "fft (estimate)", "launches": count, "compute_ms": 0.0, "compute_limiter": "bytes",
             "hbm_bytes": count * n * (FFT_NODE_BYTES * nodes + FFT_LENGTH_BYTES * length)},
            _kernel_launch(sign, "sign part", count, n, node_steps, n * nodes * 32),
            _kernel_launch(read, "read-back", count, point_programs, 0, 2 * pairs * ITEMSIZE),
        ]  # fmt: skip

    def distances(count: int) -> dict:
        return _kernel_launch(distance, "distances", count, distance_programs, distance_steps, pairs * ITEMSIZE)

    recompute_sides = 0 if kept["keep_ranks"] else 2
    recompute_student = 0 if kept["keep_distances"] or recompute_sides else 1
    launches = [distances(2 + recompute_sides + recompute_student), *ranks(2 + recompute_sides)]
    launches += [
        {"name": "largest |G| (torch)", "launches": 1, "compute_ms": 0.0, "compute_limiter": "bytes",
         "hbm_bytes": pairs * ITEMSIZE},
        _kernel_launch(weighted, "deposit (A, B)", 1, point_programs, 0, 2 * pairs * ITEMSIZE + 2 * grid_bytes),
        {"name": "fft (estimate, A and B)", "launches": 1, "compute_ms": 0.0, "compute_limiter": "bytes",
         "hbm_bytes": 2 * n * (FFT_NODE_BYTES * nodes + FFT_LENGTH_BYTES * length)},
        _kernel_launch(gradient, "read-back (gradient)", 1, point_programs, 0, 3 * pairs * ITEMSIZE),
        {"name": "distance backward (2 float64 GEMMs)", "launches": 1,
         "compute_ms": 1e3 * 2 * n * n * FEATURES / (hm.SMS * hm.SUB_PARTITIONS * hm.TENSOR_MACS_PER_CLOCK
                                                      * hm.CLOCK_HZ),
         "compute_limiter": "tensor", "hbm_bytes": 2 * pairs * 8},
    ]  # fmt: skip
    return launches


def predict(binned: dict[str, dict], dense: dict[str, dict], n: int) -> dict[str, object]:
    """Predicted fwd+bwd at batch size n on each GPU, against the rank stage's HBM floor: each side's
    dissimilarities read and ranks written once, the student's dissimilarities, ∂L/∂R and ∂L/∂y once more."""
    geometry = grid_geometry(n)
    launches = workload(binned, dense, n, geometry)
    floor_bytes = (2 * 2 + 3) * n * (n - 1) * ITEMSIZE
    gpus = {}
    for gpu, bandwidth in BANDWIDTH.items():
        times = [max(launch["compute_ms"], 1e3 * launch["hbm_bytes"] / bandwidth) for launch in launches]
        rank = sum(t for launch, t in zip(launches, times, strict=True) if "distance" not in launch["name"])
        total = sum(times)
        floor = 1e3 * floor_bytes / bandwidth
        gpus[gpu] = {"predicted_ms": total, "rank_stage_ms": rank, "distance_stage_ms": total - rank,
                     "rank_floor_ms": floor, "rank_multiple": rank / floor, "target_ms": TARGET_MS[n],
                     "launch_ms": times}  # fmt: skip
    # Per Triton function (the name a GPU profile shows), on the H100, so a measured run can check each kernel.
    kernels: dict[str, float] = {}
    for launch, ms in zip(launches, gpus["H100"]["launch_ms"], strict=True):
        if "variant" in launch:
            function = (binned | dense)[launch["variant"]]["function"]
            kernels[function] = kernels.get(function, 0.0) + ms
    return {"name": f"binned_fwd_bwd_fp32_n{n}", "n": n, "p": FEATURES, "q": FEATURES, **geometry, **_plan(n),
            "predicted_ms": gpus["H100"]["predicted_ms"], "kernels": kernels, "gpus": gpus,
            "launches": launches}  # fmt: skip


def model(dense: dict[str, dict]) -> dict[str, object]:
    """The grid kernel variants and the binned predictions; ``dense`` holds the dense model's variant records
    (the distance kernel's is used)."""
    from pc_kernels.kernels.variants import binned_variants

    records = {v.name: analyse(v) for v in binned_variants()}
    return {"bandwidth": BANDWIDTH, "workload": {"p": FEATURES, "q": FEATURES, "tau": TAU, "dtype": "float32"},
            "variants": list(records.values()), "predictions": [predict(records, dense, n) for n in SIZES]}  # fmt: skip


def render(binned: dict) -> list[str]:
    """Markdown lines: the grid kernels per point, and the binned predictions."""
    title = "Binned grid kernels, per point (one candidate pair; the sign part per grid node), from the sm_90 SASS:"
    header = ("| variant | regs | spills (stack B) | blocks/SM (limit) | instr/pair | global B/pair | atomics/pair | "
              "issue clk/pair | FP64 clk/pair |")  # fmt: skip
    lines = ["", title, "", header, "|---|---|---|---|---|---|---|---|---|"]
    for r in binned["variants"]:
        clocks = r["clocks_per_item"]
        lines.append(
            f"| {r['name']} | {r['registers']} | {r['spill_instructions']} ({r['stack_bytes']}) | "
            f"{r['occupancy']['blocks_per_sm']} ({r['occupancy']['limiter']}) | {r['instructions_per_item']:.1f} | "
            f"{r['global_bytes_per_item']:.1f} | {r['atomics_per_item']:.1f} | {clocks['issue']:.2f} | "
            f"{clocks['fp64']:.2f} |"
        )
    lines += ["", "Binned fwd+bwd, float32, p = q = 256, τ = 0.1, Gaussian features (grid from sampled rows); FFT time "
              "estimated from its bytes; rank floor = the rank stage's fewest HBM bytes over the bandwidth:", "",
              "| n | nodes / FFT length | kept ranks | GPU | predicted ms | rank stage ms | rank floor ms | rank × "
              "| distance stage ms | target ms |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for p in binned["predictions"]:
        for gpu, g in p["gpus"].items():
            lines.append(
                f"| {p['n']} | {p['nodes']} / {p['length']} | {p['keep_ranks']} | {gpu} | **{g['predicted_ms']:.1f}** "
                f"| {g['rank_stage_ms']:.1f} | {g['rank_floor_ms']:.1f} | {g['rank_multiple']:.2f} | "
                f"{g['distance_stage_ms']:.1f} | {g['target_ms']:g} |"
            )
    return lines
