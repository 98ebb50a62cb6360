"""Command-line benchmark report: sweep providers × modes × n × dims × dtypes on one device.

    python -m benchmarks.report --device {cpu,cuda} --sizes 64,128,... --dims 64[,256 or PxQ]
        --dtypes float32[,bfloat16]
        --providers triton,triton_binned,torch,torch_binned,reference,reference_compiled
        --modes fwd,fwd_bwd [--quick] [--time-limit SECONDS] [--memory-limit-gb X]
        [--min-repeats N] [--max-repeats N] [--accuracy-rows N]
        [--threads N] [--compile-cache {fresh,shared}] --out DIR

Rows are appended to DIR/<device-tag>/results.csv as each point finishes (a run stopped early
keeps what it measured); at the end the run's table is printed, and plots (PNG) and a table
(table.md) are written beside the CSV file: of this run's rows with --quick, else of every point's
latest full measurement in that file (as ``benchmarks.readme_table`` pools them), so that a run of a
few providers or sizes adds to the stored results instead of hiding them. Each point of our
providers that ran also records its accuracy against the dense float64 torch backend on its first
--accuracy-rows reference rows. Exits with status 1 if any point failed with an error
(out-of-memory and too-slow points are results, not errors).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from .plots import draw_plots
from .point import ACCURACY_ROWS, DTYPES, Settings
from .providers import PROVIDERS
from .records import RESULTS_FILE, Row, append_rows, device_tag, latest_per_point, load_rows, run_environment
from .runner import GIB, SweepConfig, run_sweep
from .table import format_bytes, format_cosine, format_seconds, markdown_tables
from .throughput import MODES

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
TABLE_FILE = "table.md"

# Per (device, quick): sizes, dims, dtypes, time limit per call (s), and repeat settings
# (repeat budget s, min repeats, max repeats).
_DEFAULTS = {
    ("cpu", False): ("64,128,256,512,768,1024,1536,2048", "64", "float32", 15.0, (5.0, 3, 10)),
    ("cpu", True): ("48", "16", "float32", 10.0, (0.3, 3, 5)),
    ("cuda", False): (
        "128,256,512,1024,2048,4096,8192,16384,32768",
        "64,256",
        "float32,bfloat16",
        5.0,
        (1.0, 5, 50),
    ),
    ("cuda", True): ("256,1024", "64", "float32", 5.0, (0.3, 5, 20)),
}
# Share of the memory free at start that one call may use by default (CPU memory is shared
# with other work; a GPU is taken to be ours).
_DEFAULT_MEMORY_SHARE = {"cpu": 0.4, "cuda": 0.9}


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers; got {text!r}")
    return values


def _dims(text: str) -> tuple[tuple[int, int], ...]:
    pairs = []
    for entry in text.split(","):
        sizes = _positive_ints(entry.replace("x", ","))
        if len(sizes) > 2:
            raise argparse.ArgumentTypeError(f"a dims entry is P (p = q) or PxQ; got {entry!r}")
        pairs.append((sizes[0], sizes[-1]))
    return tuple(pairs)


def _choices(accepted: tuple[str, ...]):
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(text.split(","))
        unknown = [v for v in values if v not in accepted]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; accepted: {', '.join(accepted)}")
        return values

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where to run (default: cuda if available)",
    )
    parser.add_argument(
        "--sizes", type=_positive_ints, help="batch sizes n (default depends on device and --quick)"
    )
    parser.add_argument(
        "--dims", type=_dims, help="feature sizes: P (student = teacher) or PxQ, comma-separated"
    )
    parser.add_argument(
        "--dtypes", type=_choices(tuple(DTYPES)), help="input dtypes (default float32[,bfloat16 on cuda])"
    )
    parser.add_argument(
        "--providers", type=_choices(PROVIDERS), default=PROVIDERS, help=f"default {','.join(PROVIDERS)}"
    )
    parser.add_argument("--modes", type=_choices(MODES), default=MODES, help=f"default {','.join(MODES)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, about a minute on a 2-core CPU")
    parser.add_argument("--time-limit", type=float, help="longest one call may take, seconds")
    parser.add_argument(
        "--memory-limit-gb", type=float, help="most memory one call may use above its inputs, GiB"
    )
    parser.add_argument(
        "--min-repeats", type=int, help="timed calls per point, at least (default: per device and --quick)"
    )
    parser.add_argument("--max-repeats", type=int, help="timed calls per point at most (default likewise)")
    parser.add_argument(
        "--accuracy-rows",
        type=int,
        default=ACCURACY_ROWS,
        help="reference rows our providers' accuracy is measured on: the first min(n, N)"
        f" (default {ACCURACY_ROWS}; 0: not measured)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads on CPU (default: all cores; 1 with --quick, which must not need a quiet machine)",
    )
    parser.add_argument(
        "--compile-cache",
        choices=("fresh", "shared"),
        help="CPU: an empty inductor cache per point (cold compile; default) or the shared one (--quick)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})"
    )
    return parser


def _free_memory_bytes(device: str) -> int:
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable line")


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    """The sweep an argument namespace asks for, with per-device defaults filled in."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    threads = args.threads or (1 if args.quick else os.cpu_count())
    if threads < 1:
        raise SystemExit(f"--threads must be >= 1; got {args.threads}")
    sizes, dims, dtypes, time_limit, (budget, min_repeats, max_repeats) = _DEFAULTS[(args.device, args.quick)]
    if args.sizes is not None and min(args.sizes) < 3:
        raise SystemExit(f"--sizes must all be >= 3 (the loss needs n >= 3); got {args.sizes}")
    for option, value in (("--memory-limit-gb", args.memory_limit_gb), ("--time-limit", args.time_limit)):
        if value is not None and value <= 0:
            raise SystemExit(f"{option} must be > 0; got {value}")
    min_repeats = min_repeats if args.min_repeats is None else args.min_repeats
    max_repeats = max(max_repeats, min_repeats) if args.max_repeats is None else args.max_repeats
    if min(min_repeats, max_repeats) < 1 or max_repeats < min_repeats:
        raise SystemExit(f"need 1 <= --min-repeats <= --max-repeats; got {min_repeats} and {max_repeats}")
    if args.accuracy_rows < 0:
        raise SystemExit(f"--accuracy-rows must be >= 0; got {args.accuracy_rows}")
    memory_gib = (
        args.memory_limit_gb or _DEFAULT_MEMORY_SHARE[args.device] * _free_memory_bytes(args.device) / GIB
    )
    compile_cache = args.compile_cache or ("shared" if args.quick else "fresh")
    return SweepConfig(
        device=args.device,
        sizes=args.sizes or _positive_ints(sizes),
        dims=args.dims or _dims(dims),
        dtypes=args.dtypes or tuple(dtypes.split(",")),
        providers=args.providers,
        modes=args.modes,
        threads=threads,
        memory_limit_bytes=int(memory_gib * GIB),
        settings=Settings(
            args.time_limit or time_limit, budget, min_repeats, max_repeats, accuracy_rows=args.accuracy_rows
        ),
        fresh_compile_cache=compile_cache == "fresh",
    )


def write_run_outputs(rows: list[Row], folder: Path) -> list[Path]:
    """Draw one run's plots and write its markdown table into ``folder``; return the files written."""
    table = folder / TABLE_FILE
    paths = draw_plots(rows, folder)
    table.write_text(markdown_tables(rows), encoding="utf-8")
    return [*paths, table]


def _progress(row: Row) -> None:
    where = f"{row['provider']:>18} {row['mode']:>7} n={row['n']:<6} {row['p']}x{row['q']} {row['dtype']}"
    if row["status"] == "ok":
        spread = f"p20 {format_seconds(row['p20_s'])}, p80 {format_seconds(row['p80_s'])}"
        what = f"{format_seconds(row['median_s'])} ({spread})"
        what += f", peak {format_bytes(row['peak_bytes'])}, first call {format_seconds(row['first_call_s'])}"
        if row["loss_rel_error"] is not None:
            accuracy = f"loss rel. err {row['loss_rel_error']:.2g}, grad cos {format_cosine(row['grad_cosine'])}"
            what += ", " + accuracy
        elif row["note"]:
            what += f", {row['note']}"
    else:
        what = str(row["note"])
    print(f"{where}: {what}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the report; return the process exit status."""
    args = _parser().parse_args(argv)
    config = config_from_args(args)
    environment = run_environment(config.device, config.threads, "quick" if args.quick else "full")
    folder = args.out / device_tag(config.device, str(environment["device_name"]))
    print(f"Benchmarking on {environment['device_name']} ({config.device}); results in {folder}", flush=True)

    def store(row: Row) -> None:
        _progress(row)
        append_rows(folder / RESULTS_FILE, [row])

    rows = run_sweep(config, environment, store)
    stored = rows if args.quick else latest_per_point(load_rows(folder / RESULTS_FILE), "full")
    written = write_run_outputs(stored, folder)
    print()
    print(markdown_tables(rows))
    print("Wrote " + ", ".join(str(path) for path in [folder / RESULTS_FILE, *written]))
    errors = [row for row in rows if row["status"] == "error"]
    for row in errors:
        print(f"error: {row['provider']} {row['mode']} n={row['n']}: {row['note']}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
