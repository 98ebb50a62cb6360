"""The triton backend against SPEC.md's floor: one fwd+bwd timing, its memory, and the largest n that runs.

    python -m benchmarks.triton_floor --out DIR [--n 4096] [--dim 256] [--largest 32768] [--budget-s 120]

For each sigmoid flavour (the default exp form, and PC_KERNELS_FAST_SIGMOID=1's tanh.approx form)
it times fwd and fwd+bwd at n × dim float32 (student requires grad, teacher detached: three soft
n³ passes) with ``triton.testing.do_bench``, and reports evaluations per second and the fraction of
the SPEC.md floor (4e12 sigmoids/s on an H100). Peak memory of one fwd+bwd above its inputs is
compared with six n×n float32 matrices. Then each n of ``--largest`` runs one fwd+bwd call, unless
the time extrapolated as n³ from n would exceed what is left of ``--budget-s``.
Writes ``triton_floor.json`` and ``triton_floor.md`` into ``--out``.

On CPU (TRITON_INTERPRET=1, ``--device cpu``) it runs the same steps with wall-clock timing: a dry
run of the plumbing only, at tiny sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from pc_kernels import perception_coherence_loss
from pc_kernels.kernels.launch import FAST_SIGMOID_ENV

from .throughput import H100_SIGMOID_FLOOR_PER_S, sigmoid_evaluations

FLOAT32_BYTES = 4
FLOOR_MATRICES = 6


def _inputs(n: int, dim: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator(device=device).manual_seed(0)
    student = torch.randn(n, dim, device=device, generator=generator).requires_grad_()
    teacher = torch.randn(n, dim, device=device, generator=generator)
    return student, teacher


def _call(student: torch.Tensor, teacher: torch.Tensor, mode: str) -> Callable[[], None]:
    def run() -> None:
        loss = perception_coherence_loss(student, teacher, backend="triton")
        if mode == "fwd_bwd":
            student.grad = None
            loss.backward()

    return run


def _milliseconds(run: Callable[[], None], device: str) -> float:
    """Median time of one call: triton.testing.do_bench on CUDA, wall clock (3 calls) on CPU."""
    if device == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(run, warmup=100, rep=500, return_mode="median"))
    run()
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


def _run_with_peak(run: Callable[[], None], device: str) -> int | None:
    """Run once; on CUDA return the peak allocated bytes above what was allocated before (the inputs)."""
    if device != "cuda":
        run()
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def timing_rows(n: int, dim: int, device: str) -> list[dict]:
    """fwd and fwd+bwd at n × dim for both sigmoid flavours, with throughput and floor fraction."""
    student, teacher = _inputs(n, dim, device)
    rows = []
    for fast in ("0", "1"):
        os.environ[FAST_SIGMOID_ENV] = fast
        for mode in ("fwd", "fwd_bwd"):
            ms = _milliseconds(_call(student, teacher, mode), device)
            evaluations = sigmoid_evaluations(n, mode)
            rows.append(
                dict(
                    n=n, dim=dim, mode=mode, fast_sigmoid=fast == "1", ms=ms,
                    evaluations_per_s=evaluations / (ms / 1e3),
                    floor_fraction=evaluations / H100_SIGMOID_FLOOR_PER_S / (ms / 1e3),
                )
            )
        peak = _run_with_peak(_call(student, teacher, "fwd_bwd"), device)
        rows[-1]["peak_bytes_above_inputs"] = peak
        rows[-1]["peak_in_nxn_float32"] = None if peak is None else peak / (n * n * FLOAT32_BYTES)
    os.environ.pop(FAST_SIGMOID_ENV)
    return rows


def largest_rows(sizes: list[int], dim: int, device: str, reference: tuple[int, float], budget_s: float) -> list[dict]:
    """One fwd+bwd call per size, skipping sizes whose n³-extrapolated time exceeds the budget left."""
    rows = []
    deadline = time.monotonic() + budget_s
    ref_n, ref_ms = reference
    for n in sizes:
        predicted_s = ref_ms / 1e3 * (n / ref_n) ** 3
        if predicted_s > deadline - time.monotonic():
            rows.append(dict(n=n, status=f"skipped (predicted {predicted_s:.0f} s > budget left)"))
            continue
        try:
            student, teacher = _inputs(n, dim, device)
            run = _call(student, teacher, "fwd_bwd")
            start = time.perf_counter()
            peak = _run_with_peak(run, device)
            seconds = time.perf_counter() - start
            rows.append(
                dict(n=n, status="ok", seconds=seconds, peak_bytes_above_inputs=peak,
                     peak_in_nxn_float32=None if peak is None else peak / (n * n * FLOAT32_BYTES))
            )
        except torch.OutOfMemoryError as error:
            rows.append(dict(n=n, status=f"OOM ({str(error).splitlines()[0]})"))
            break
        finally:
            student = teacher = None
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


def _markdown(device_name: str, timings: list[dict], largest: list[dict]) -> str:
    lines = [
        f"# triton backend vs SPEC.md floor on {device_name}",
        "",
        "| n | dim | mode | fast sigmoid | ms | evaluations/s | fraction of floor | peak (n×n f32) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in timings:
        peak = r.get("peak_in_nxn_float32")
        lines.append(
            f"| {r['n']} | {r['dim']} | {r['mode']} | {r['fast_sigmoid']} | {r['ms']:.2f} | "
            f"{r['evaluations_per_s']:.3g} | {r['floor_fraction']:.2f} | {'' if peak is None else f'{peak:.2f}'} |"
        )
    lines += ["", f"Memory floor: inputs + {FLOOR_MATRICES} n×n float32.", ""]
    lines += ["| n | status | s | peak (n×n f32) |", "|---|---|---|---|"]
    for r in largest:
        peak = r.get("peak_in_nxn_float32")
        seconds = r.get("seconds")
        lines.append(
            f"| {r['n']} | {r['status']} | {'' if seconds is None else f'{seconds:.1f}'} | "
            f"{'' if peak is None else f'{peak:.2f}'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--largest", default="32768", help="comma-separated n for the one-call largest-n probe")
    parser.add_argument("--budget-s", type=float, default=120.0, help="time allowed for the largest-n probe")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU (Triton interpreter)"
    timings = timing_rows(args.n, args.dim, args.device)
    default_fwd_bwd = next(r for r in timings if r["mode"] == "fwd_bwd" and not r["fast_sigmoid"])
    sizes = [int(s) for s in args.largest.split(",") if s]
    largest = largest_rows(sizes, args.dim, args.device, (args.n, default_fwd_bwd["ms"]), args.budget_s)
    result = dict(device=device_name, torch=torch.__version__, timings=timings, largest=largest)
    (args.out / "triton_floor.json").write_text(json.dumps(result, indent=2))
    text = _markdown(device_name, timings, largest)
    (args.out / "triton_floor.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
