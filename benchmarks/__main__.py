"""``python -m benchmarks {sweep,scaling,stages,accuracy,floor,hopper,readme}``: the benchmark CLI; ``--help`` on a
subcommand lists its options. Results go to ``benchmarks/results/<device-slug>/`` (quick and dry runs: a
temporary folder); results of uncommitted code are stored there only with ``--allow-dirty``, marked "-dirty"."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

import pc_kernels

from . import harness, hopper_model, reports
from .harness import GIB, MODES, PROVIDERS, RESULTS, Limits, Point
from .reports import format_bytes, format_seconds

DEFAULTS = {  # (device, quick): sizes, dims, dtypes, time limit per call (s), repeat budget (s), max repeats
    ("cpu", False): ("64,128,256,512,768,1024,1536,2048", "64", "float32", 15.0, 5.0, 10),
    ("cpu", True): ("16,32", "8", "float32", 10.0, 0.2, 5),
    ("cuda", False): ("128,256,512,1024,2048,4096,8192,16384,32768", "64,256", "float32,bfloat16", 5.0, 1.0, 50),
    ("cuda", True): ("256,1024", "64", "float32", 5.0, 0.3, 20),
}
RANK_BOUND = 1e-5  # the documented bound of the binned soft ranks with the automatic grid


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.isdigit())
    if len(values) != len(text.split(",")) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers; got {text!r}")
    return values


def _dims(text: str) -> tuple[tuple[int, int], ...]:
    pairs = [_ints(entry.replace("x", ",")) for entry in text.split(",")]
    if any(len(pair) > 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"each dims entry is P (p = q) or PxQ; got {text!r}")
    return tuple((pair[0], pair[-1]) for pair in pairs)


def _names(accepted: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        if unknown := [name for name in text.split(",") if name not in accepted]:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; accepted: {', '.join(accepted)}")
        return tuple(text.split(","))

    return parse


def _print_row(row: dict) -> None:
    ran = f"{format_seconds(row['median_s'])}, peak {format_bytes(row['peak_bytes'])}" if row["status"] == "ok" else ""
    where = f"{row['provider']:>19} {row['mode']:>7} n={row['n']:<6} {row['p']}x{row['q']} {row['dtype']}"
    print(f"{where}: {ran or row['note']}", flush=True)


def _measure(args: argparse.Namespace, series: list[list[Point]], limits: Limits, csv_name: str) -> int:
    """Run every series, appending each row to ``<out>/<device-slug>/<csv_name>`` as it is measured, then
    write the reports of each point's latest full measurement there (of this run's rows if quick). Exit
    status 1 if a point failed with an error."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    commit = harness.source_commit()
    out = args.out or (Path(tempfile.gettempdir(), "pc_kernels_bench") if args.quick else RESULTS)
    harness.require_clean(commit, out, args.allow_dirty)
    environment = harness.run_environment(args.device, limits.threads, "quick" if args.quick else "full", commit)
    folder = out / harness.device_slug(args.device, str(environment["device_name"]))
    print(f"Benchmarking on {environment['device_name']}, commit {commit}; results in {folder}", flush=True)

    def store(row: dict) -> None:
        _print_row(row)
        harness.append_rows(folder / csv_name, [row])

    rows = [row for points in series for row in harness.run_series(points, limits, environment, store)]
    stored = rows if args.quick else harness.latest_per_point(harness.load_rows(folder / csv_name))
    text, figures = reports.write_outputs(folder, stored, csv_name)
    print("\n" + text + "\nWrote " + ", ".join(map(str, [folder / csv_name, *figures])))
    return 1 if any(row["status"] == "error" for row in rows) else 0


def _limits(args: argparse.Namespace, time_limit: float, budget: float, max_repeats: int, accuracy_rows: int) -> Limits:
    memory = args.memory_limit_gb and args.memory_limit_gb * GIB
    if memory is None and args.device == "cuda":
        memory = 0.9 * torch.cuda.mem_get_info()[0]
    elif memory is None:  # CPU memory is shared with other work: 40 % of what is available
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            memory = 0.4 * 1024 * next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:"))
    threads = args.threads or (1 if args.quick else len(os.sched_getaffinity(0)))
    repeats = (args.min_repeats, max(args.min_repeats, max_repeats))
    return Limits(time_limit, budget, *repeats, int(memory), threads, not args.quick, accuracy_rows)


def sweep(args: argparse.Namespace) -> int:
    """Providers × n × modes × dims × dtypes: results.csv, table.md and plots per device."""
    sizes, dims, dtypes, time_limit, budget, max_repeats = DEFAULTS[(args.device, args.quick)]
    limits = _limits(args, args.time_limit or time_limit, budget, max_repeats, args.accuracy_rows)
    series = [
        [Point(provider, mode, n, p, q, dtype, args.device) for n in args.sizes or _ints(sizes)]
        for p, q in args.dims or _dims(dims)
        for dtype in args.dtypes or dtypes.split(",")
        for mode in args.modes
        for provider in args.providers
    ]
    return _measure(args, series, limits, "results.csv")


def scaling(args: argparse.Namespace) -> int:
    """The binned algorithm's time vs n (1024 … 32768) and its fitted exponent: scaling.csv, .md and .png."""
    limits = _limits(args, args.time_limit, 0.0, args.min_repeats, accuracy_rows=0)
    sizes = args.sizes or ((64, 128, 256) if args.quick else tuple(2**k for k in range(10, 16)))
    points = [Point(args.provider, "fwd_bwd", n, args.dim, args.dim, "float32", args.device) for n in sizes]
    return _measure(args, [points], limits, "scaling.csv")


def stages(args: argparse.Namespace) -> int:
    """One fwd+bwd call's time, stage by stage: stages-<provider>-n<n>.md.

    Stages are the pipeline's ``pc_kernels.<stage>`` profiler ranges (CPU time of each, children included)."""
    point = Point(args.provider, "fwd_bwd", args.n, args.dim, args.dim, "float32", args.device)
    commit, threads = harness.source_commit(), args.threads or len(os.sched_getaffinity(0))
    environment = harness.run_environment(args.device, threads, "stages", commit)
    folder = (args.out or RESULTS) / harness.device_slug(args.device, str(environment["device_name"]))
    harness.require_clean(commit, folder, args.allow_dirty)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        call = harness.build_call(point, harness.make_inputs(point))
        call()  # compiles (numba, Triton) and fills caches outside the profile
        with torch.profiler.profile() as profile:
            total = harness.wall_seconds(call, args.device)
    finally:
        torch.set_num_threads(previous)
    spans = {e.key[11:]: e.cpu_time_total / 1e6 for e in profile.key_averages() if e.key.startswith("pc_kernels.")}
    spans["outside the stages (Python, blocks, autograd)"] = total - sum(spans.values())
    rows = [f"| {name} | {format_seconds(t)} | {100 * t / total:.0f} % |" for name, t in spans.items()]
    head = f"Stages of one fwd+bwd call of {args.provider}, n = {args.n}, p = q = {args.dim}, float32"
    head += f", OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    lines = [f"{head}: {format_seconds(total)} in all, profiled — {reports.run_label([environment])}.", ""]
    lines += ["| stage | time | share of the call |", "|---|---|---|", *rows]
    folder.mkdir(parents=True, exist_ok=True)
    (path := folder / f"stages-{args.provider}-n{args.n}.md").write_text(text := "\n".join(lines) + "\n", "utf-8")
    print(text + f"Wrote {path}")
    return 0


def accuracy(args: argparse.Namespace) -> int:
    """Binned vs dense accuracy per τ, float32 and float64 inputs: binned_accuracy.md.

    Binned: torch backend; dense: torch backend on float64 inputs; Gaussian and clustered students with a
    noisy linear map of them as teacher."""
    commit, out = harness.source_commit(), args.out or RESULTS / "binned_accuracy.md"
    harness.require_clean(commit, out, args.allow_dirty)
    when = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}"
    lines = [
        f"Binned vs dense (dense: torch backend, float64 inputs), n = {args.n}, p = q = {args.dim}, automatic grid"
        f" (soft-rank bound {RANK_BOUND:g}); {harness.device_name('cpu')}, torch {torch.__version__}, commit {commit},"
        f" {when}.",
        "",
        "| features | τ | inputs | max soft-rank error | loss rel. error | gradient cosine | gradient rel. L2 error |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("gaussian", "clusters"):
        g = torch.Generator().manual_seed(0)
        student = torch.randn(args.n, args.dim, generator=g, dtype=torch.float64)
        if kind == "clusters":
            centres = 4.0 * torch.randn(10, args.dim, generator=g, dtype=torch.float64)
            student += centres[torch.randint(0, 10, (args.n,), generator=g)]
        teacher = student @ torch.randn(args.dim, args.dim, generator=g, dtype=torch.float64) / args.dim**0.5
        teacher += 0.5 * torch.randn(args.n, args.dim, generator=g, dtype=torch.float64)
        for tau in args.taus:
            dense_ranks = pc_kernels.soft_ranks(student, tau=tau, backend="torch")
            dense_loss, dense = harness.loss_and_gradient(student, teacher, backend="torch", tau=tau)
            for dtype in (torch.float32, torch.float64):
                s, t = student.to(dtype), teacher.to(dtype)
                binned_ranks = pc_kernels.soft_ranks(s, tau=tau, backend="torch", algorithm="binned")
                rank_error = (binned_ranks - dense_ranks).abs()
                loss, gradient = harness.loss_and_gradient(s, t, backend="torch", tau=tau, algorithm="binned")
                cosine = torch.nn.functional.cosine_similarity(gradient, dense, dim=0).item()
                loss_error = abs(loss - dense_loss) / abs(dense_loss)
                errors = f"{rank_error.max().item():.2e} | {loss_error:.2e} | {cosine:.8f}"
                relative = ((gradient - dense).norm() / dense.norm()).item()
                lines.append(f"| {kind} | {tau:g} | {str(dtype)[6:]} | {errors} | {relative:.2e} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text := "\n".join(lines) + "\n", encoding="utf-8")
    print(text + f"Wrote {out}")
    return 0


def load_predictions(path: Path) -> list[dict]:
    """The entries of a static model's predictions file, shaped {"predictions": [{"name": str, "n": int,
    "p": int, "q": int, "predicted_ms": float}, ...]}, followed by those of its optional {"binned":
    {"predictions": [...]}} (names starting "binned"); a SystemExit naming what is missing or wrong."""
    model = json.loads(path.read_text(encoding="utf-8"))
    entries = model.get("predictions")
    if isinstance(entries, list) and isinstance(model.get("binned"), dict):
        entries = entries + list(model["binned"].get("predictions", []))
    shape = {"name": str, "n": int, "p": int, "q": int, "predicted_ms": (int, float)}
    for index, entry in enumerate(entries if isinstance(entries, list) else [{}]):
        if bad := [key for key, kind in shape.items() if not isinstance(dict(entry).get(key), kind)]:
            raise SystemExit(f"--predictions {path}: predictions[{index}] needs {', '.join(bad)}; expected {shape}")
    return entries


def profiled_ms(entry: dict, provider: str, device: str, dtype: str, dry_run: bool) -> dict[str, float | None]:
    """One fwd+bwd call of ``provider`` at the entry's n, p, q (a dry run: n = 16, p = q = 8): its wall time
    ("whole call", ms) and each kernel the entry predicts (entry["kernels"]: Triton function names), by its
    profiled time (CUDA: device time; CPU: CPU time), None for a kernel that did not run."""
    n, p, q = (16, 8, 8) if dry_run else (entry["n"], entry["p"], entry["q"])
    point = Point(provider, "fwd_bwd", n, p, q, dtype, device)
    call = harness.build_call(point, harness.make_inputs(point))
    call()  # compiles the kernels outside the profile
    activity = torch.profiler.ProfilerActivity.CUDA if device == "cuda" else torch.profiler.ProfilerActivity.CPU
    with torch.profiler.profile(activities=[activity]) as profile:
        whole = harness.wall_seconds(call, device)
    kind = "device_time_total" if device == "cuda" else "cpu_time_total"
    events = profile.key_averages()
    measured = {name: [getattr(e, kind) / 1e3 for e in events if name in e.key] for name in entry.get("kernels", {})}
    return {"whole call": 1e3 * whole} | {name: sum(times) if times else None for name, times in measured.items()}


def floor(args: argparse.Namespace) -> int:
    """CUDA: the triton backend vs docs/spec.md's floor, the largest n within 60 s, binned at large n.

    Dense fwd+bwd at --n against the floor, then one call per doubled n while it fits --time-limit, the
    binned algorithm at --binned-sizes, peak memory; --predictions: a static model's kernel times.
    --dry-run: every step with the torch backend on CPU at tiny sizes."""
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("floor needs a CUDA GPU and none is available here; --dry-run runs its steps on CPU")
    device, dense, binned = ("cpu", "torch", "torch_binned") if args.dry_run else ("cuda", "triton", "triton_binned")
    sizes = (16, 8, (32, 64), 64) if args.dry_run else (args.n, args.dim, args.binned_sizes, args.max_n)
    n, dim, binned_sizes, max_n = sizes
    dated = RESULTS / f"gpu-{datetime.date.today():%Y%m%d}"
    default = Path(tempfile.gettempdir(), "pc_kernels_floor") if args.dry_run else dated
    commit, out = harness.source_commit(), args.out or default
    harness.require_clean(commit, out, args.allow_dirty)
    environment = harness.run_environment(device, torch.get_num_threads(), "floor", commit)
    limits = Limits(args.time_limit, 2.0, 3, 20, 2**62, torch.get_num_threads(), accuracy_rows=0)

    def run(provider: str, sizes: list[int], limits: Limits, last_ok: tuple[int, float] | None = None) -> list[dict]:
        points = [Point(provider, "fwd_bwd", size, dim, dim, args.dtype, device) for size in sizes]
        measure = harness.measure_point if args.dry_run else harness.measure  # the dry run: in this process
        return harness.run_series(points, limits, environment, _print_row, measure, last_ok)

    rows = run(dense, [n], limits)
    if rows[0]["status"] == "ok":  # the search: one call per n, extrapolated as n³ from the last one
        doubled = [n * 2**k for k in range(1, max_n.bit_length()) if n * 2**k <= max_n]
        rows += run(dense, doubled, replace(limits, max_repeats=0), (n, rows[0]["median_s"]))
    largest = max((r["n"] for r in rows if r["status"] == "ok"), default=None)
    rows += run(binned, list(binned_sizes), limits)
    within = f"Largest n whose dense fwd+bwd ran within {args.time_limit:g} s: {largest}"
    lines = [f"GPU floor check, {args.dtype} inputs; dense n > {n}: one call each. {within}.", ""]
    lines += [reports.markdown_tables(rows)]
    predictions = []
    if args.predictions is not None:
        # The workloads the call ran: its dtype's kernels (bf16 and fp32 inputs both run float32 ones) and
        # its sigmoid (fast with PC_KERNELS_FAST_SIGMOID=1).
        sigmoid = "_fast" if os.environ.get("PC_KERNELS_FAST_SIGMOID") == "1" else "_accurate"
        ran = ("fp64" if args.dtype == "float64" else "fp32") + sigmoid
        lines += [f"Static model ({args.predictions.name}) vs profiled fwd+bwd of {dense} ({ran}) and {binned}:", ""]
        lines += [
            "| workload | n | p | q | part | predicted | measured | measured / predicted |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for entry in load_predictions(args.predictions):
            provider = binned if entry["name"].startswith("binned") else dense
            # A binned workload names its kernels' dtype only (it evaluates no sigmoid).
            same = f"_{ran.split('_')[0]}_" in entry["name"] if provider == binned else entry["name"].endswith(ran)
            if not same or "fwd_bwd" not in entry["name"]:
                continue
            measured = profiled_ms(entry, provider, device, args.dtype, args.dry_run)
            predictions.append(entry | {"measured_ms": measured})
            where = " | ".join(str(entry[key]) for key in ("name", "n", "p", "q"))
            for part, ms in measured.items():
                predicted = entry["predicted_ms"] if part == "whole call" else entry["kernels"][part]
                shown = "not launched | —" if ms is None else f"{ms:.3g} ms | {ms / predicted:.3g}"
                lines.append(f"| {where} | {part} | {predicted:.3g} ms | {shown} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "floor.md").write_text(text := "\n".join(lines) + "\n", encoding="utf-8")
    summary = {"rows": rows, "largest_n": largest, "predictions": predictions}
    (out / "floor.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print("\n" + text + f"Wrote {out / 'floor.md'}, {out / 'floor.json'}")
    return 1 if any(r["status"] == "error" for r in rows) else 0


def readme(args: argparse.Namespace) -> int:
    """Regenerate the generated block of docs/benchmarks.md (or --file) from stored results."""
    block = reports.benchmark_block(args.results, args.file.resolve().parent)
    args.file.write_text(reports.replace_block(args.file.read_text(encoding="utf-8"), block), encoding="utf-8")
    print(f"Rewrote the benchmark block of {args.file}")
    return 0


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser: one subparser per subcommand."""
    main = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = main.add_subparsers(dest="command", required=True)
    cuda = "cuda" if torch.cuda.is_available() else "cpu"
    for run in SUBCOMMANDS:
        command = commands.add_parser(run.__name__, help=run.__doc__.splitlines()[0], description=run.__doc__, **RAW)
        command.set_defaults(run=run)
        add = command.add_argument
        if run in (sweep, scaling, stages):
            add("--device", choices=("cpu", "cuda"), default=cuda, help=f"default {cuda}")
            quick = "" if run is stages else "; --quick: 1"
            add("--threads", type=int, help=f"torch threads of CPU workers (default: all cores{quick})")
        if run in (sweep, scaling):
            add(
                "--memory-limit-gb",
                type=float,
                help="most one call may use above its inputs (default: 40 %% of "
                "available memory on CPU, 90 %% of free GPU memory on CUDA)",
            )
            add("--quick", action="store_true", help="smoke run: tiny sizes, a temporary results folder")
            add("--min-repeats", type=int, default=3, help="timed calls per point, at least (default 3)")
        if run is not readme:
            add("--out", type=Path, help="results folder or file (default under benchmarks/results)")
            add("--allow-dirty", action="store_true", help="store results of uncommitted code, marked -dirty")
        if run is stages:
            add("--provider", choices=tuple(harness.OURS), default="torch_binned", help="default torch_binned")
            add("--n", type=int, default=4096, help="batch size (default 4096)")
        if run in (scaling, stages, accuracy, floor):
            add("--dim", type=int, default={floor: 256}.get(run, 64), help="p = q (default %(default)s)")
        if run is sweep:
            add("--sizes", type=_ints, help="batch sizes n (default per device and --quick)")
            add("--dims", type=_dims, help="feature sizes: P (p = q) or PxQ, comma-separated (default per device)")
            add("--dtypes", type=_names(tuple(harness.DTYPES)), help="input dtypes (default per device)")
            add("--providers", type=_names(PROVIDERS), default=PROVIDERS, help=f"default {','.join(PROVIDERS)}")
            add("--modes", type=_names(MODES), default=MODES, help="default fwd,fwd_bwd")
            add("--time-limit", type=float, help="longest one call may take, seconds (default per device, --quick)")
            rows = harness.ACCURACY_ROWS
            add("--accuracy-rows", type=int, default=rows, help=f"0: not measured (default {rows})")
        if run is scaling:
            add("--sizes", type=_ints, help="default 1024,2048,…,32768 (--quick: 64,128,256)")
            binned = ("torch_binned", "triton_binned")
            add("--provider", choices=binned, default="torch_binned", help="default torch_binned")
            add("--time-limit", type=float, default=900.0, help="longest one call may take (default 900 s)")
        if run is accuracy:
            add("--n", type=int, default=1024, help="batch size (default 1024)")
            taus, default = (lambda text: tuple(map(float, text.split(",")))), (0.01, 0.03, 0.1, 0.3, 1.0)
            add("--taus", type=taus, default=default, help="default 0.01,0.03,0.1,0.3,1")
        if run is floor:
            add("--n", type=int, default=4096, help="the dense point, start of the doubling search (default 4096)")
            add("--dtype", choices=tuple(harness.DTYPES), default="bfloat16", help="input dtype (default bfloat16)")
            add("--binned-sizes", type=_ints, default=(16384, 65536), help="default 16384,65536")
            add("--time-limit", type=float, default=60.0, help="one call's limit in the search (default 60 s)")
            add("--max-n", type=int, default=2**17, help="largest n the doubling search tries (default 131072)")
            add("--predictions", type=Path, help="a static model's predictions JSON (see load_predictions)")
            add("--dry-run", action="store_true", help="every step on CPU at tiny sizes (no CUDA)")
        if run is readme:
            add("--file", type=Path, default=harness.REPO / "docs" / "benchmarks.md", help="default docs/benchmarks.md")
            add("--results", type=Path, default=RESULTS, help="stored results (default benchmarks/results)")
    hopper_model.register(commands)
    return main


SUBCOMMANDS = (sweep, scaling, stages, accuracy, floor, readme)
RAW = {"formatter_class": argparse.RawDescriptionHelpFormatter}  # docstrings keep their line breaks


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; return the process exit status."""
    commands = parser()
    args = commands.parse_args(argv)
    for name, least in {"threads": 1, "min_repeats": 1, "n": 3, "dim": 1, "max_n": 3, "accuracy_rows": 0}.items():
        if (value := getattr(args, name, None)) is not None and value < least:
            commands.error(f"--{name.replace('_', '-')} must be >= {least}; got {value}")
    for name in ("time_limit", "memory_limit_gb"):
        if (value := getattr(args, name, None)) is not None and value <= 0:
            commands.error(f"--{name.replace('_', '-')} must be > 0; got {value}")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
