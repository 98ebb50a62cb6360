"""Reports of stored results: markdown tables, PNG plots, the binned scaling table, and the docs block.

Every table and figure holds the rows of one device (one results folder, ``benchmarks/results/<slug>/``)
and names its run: device, date, torch and triton versions, commit ("-dirty (uncommitted changes)" when
the measured code differed from it). Figures use matplotlib's object API (no pyplot, no global backend).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from .harness import ALTERNATIVES, BINNED, MODES, PROVIDERS, Row, latest_per_point, load_rows

START_MARKER, END_MARKER = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
PLOTS = {
    "time_vs_n.png": ("time per call vs n (median; bars: p20–p80)", "seconds"),
    "memory_vs_n.png": ("peak memory of one call above its inputs vs n", "MiB"),
    "speedup.png": ("speedup vs n: B's time / A's time (above 1: A is faster)", "speedup ×"),
}
DENSE_OURS = ("torch", "triton")


def _scaled(value: float, units: tuple[tuple[str, float], ...]) -> str:
    unit, scale = next(((u, s) for u, s in units if value >= s), units[-1])
    text = f"{value / scale:.3g}"  # three significant digits; 1000 … 1023 (or 999.5 rounded up) in full
    return f"{text if 'e' not in text else f'{value / scale:.0f}'} {unit}"


def format_seconds(seconds: float) -> str:
    """A duration with three significant digits in s, ms, µs or ns."""
    return _scaled(seconds, (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)))


def format_bytes(size: float) -> str:
    """A size with three significant digits in GiB, MiB or KiB."""
    return _scaled(size, (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)))


def format_cosine(value: float) -> str:
    """A cosine similarity; near 1 as "1−2.3e-09", so that its distance to 1 shows."""
    return "1" if value >= 1 else f"1−{1 - value:.2g}" if 1 - value < 1e-3 else f"{value:.4g}"


def run_label(rows: list[Row]) -> str:
    """ "CPU: <name>, torch threads=2 — <dates>, torch <v>, triton <v>, commit <c>" for rows of one device."""

    def distinct(field: str) -> str:
        return " / ".join(sorted({str(row[field]) for row in rows}))

    devices = {row["device"] for row in rows}
    if len(devices) != 1:
        raise ValueError(f"rows must come from one device; got {sorted(devices)}")
    where = f"{'CPU' if rows[0]['device'] == 'cpu' else 'GPU'}: {rows[0]['device_name']}"
    where += f", torch threads={distinct('threads')}" if rows[0]["device"] == "cpu" else ""
    versions = f"torch {distinct('torch_version')}, triton {distinct('triton_version')}"
    commits = distinct("commit").replace("-dirty", "-dirty (uncommitted changes)")
    return f"{where} — {distinct('date')}, {versions}, commit {commits}"


def _ok(rows: list[Row], provider: str) -> list[Row]:
    return sorted((r for r in rows if r["provider"] == provider and r["status"] == "ok"), key=lambda r: r["n"])


def _at(rows: list[Row], n: int) -> dict[str, float]:
    return {str(r["provider"]): r["median_s"] for r in rows if r["n"] == n and r["status"] == "ok"}


def _best_alternative(times: dict[str, float]) -> float | None:
    return min((times[p] for p in ALTERNATIVES if p in times), default=None)


def _comparisons(at: list[Row]) -> list[str]:
    """The extra cells of one (mode, n): our fastest dense provider vs the best alternative; each binned
    provider vs its dense one; our providers' accuracy; dense sigmoid evaluations/s (and % of the floor)."""
    times = _at(at, at[0]["n"])
    ours = min((p for p in DENSE_OURS if p in times), key=times.get, default=None)
    alternative = _best_alternative(times)
    speedup = f"{alternative / times[ours]:.3g}× ({ours})" if ours and alternative else "—"
    binned = [f"{times[d] / times[b]:.3g}× ({b} vs {d})" for b, d in BINNED.items() if b in times and d in times]
    accurate = sorted((r for r in at if r["loss_rel_error"] is not None), key=lambda r: PROVIDERS.index(r["provider"]))
    accuracy = [f"{r['provider']} {r['loss_rel_error']:.2g} · {format_cosine(r['grad_cosine'])}" for r in accurate]
    rates = [
        f"{r['evals_per_s']:.3g} ({r['provider']})"
        + (f", {100 * f:.3g}% of floor" if (f := r["floor_fraction"]) else "")
        for r in at
        if r["provider"] in DENSE_OURS and r["evals_per_s"] is not None
    ]
    return [speedup, "; ".join(binned) or "—", "; ".join(accuracy) or "—", "; ".join(rates) or "—"]


def _grid(rows: list[Row], providers: list[str], cell: Callable[[Row], str], extra: list[str]) -> list[str]:
    """A markdown table: a line per (mode, n), a column per provider, then ``extra`` columns (_comparisons)."""
    header = ["mode", "n", *providers, *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode in MODES:
        for n in sorted({r["n"] for r in rows if r["mode"] == mode}):
            at = [r for r in rows if (r["mode"], r["n"]) == (mode, n)]
            by_provider = {r["provider"]: r for r in at}
            cells = [cell(by_provider[p]) if p in by_provider else "" for p in providers]
            lines.append("| " + " | ".join([mode, str(n), *cells, *(_comparisons(at) if extra else [])]) + " |")
    return lines


def _time_and_memory(row: Row) -> str:
    if row["status"] != "ok":
        return str(row["note"])
    return f"{format_seconds(row['median_s'])} · {format_bytes(row['peak_bytes'])}"


def _first_call_overhead(row: Row) -> str:
    if row["status"] != "ok":
        return "—"
    return format_seconds(row["compile_s"]) if row["compile_s"] > 0 else "none"


def markdown_tables(rows: list[Row]) -> str:
    """Markdown for rows of one device: per (p, q, dtype), time · peak memory per provider and mode × n,
    speedups, accuracy and sigmoid evaluations/s; then each provider's first-call (compile) overhead."""
    floor = " (and % of docs/spec.md's H100/H200 floor)" if rows[0]["device"] == "cuda" else ""
    lines = [f"Measured on {run_label(rows)}.", ""]
    for p, q, dtype in sorted({(r["p"], r["q"], r["dtype"]) for r in rows}):
        block = [r for r in rows if (r["p"], r["q"], r["dtype"]) == (p, q, dtype)]
        present = [name for name in PROVIDERS if any(r["provider"] == name for r in block)]
        never = {name: {r["note"] for r in block if r["provider"] == name} for name in present if not _ok(block, name)}
        shown = [name for name in present if name not in never or len(never[name]) > 1]
        columns = ["ours (dense) vs best alternative", "binned vs dense", "accuracy: loss rel. err · grad cos"]
        columns.append(f"sigmoid evaluations/s{floor}")
        lines += [f"**p={p}, q={q}, {dtype}**: median time per call · peak memory above its inputs", ""]
        lines += _grid(block, shown, _time_and_memory, columns)
        lines += [""] + [f"- not run: {name} — {notes.pop()}" for name, notes in never.items() if len(notes) == 1]
        lines.append("- empty cell: not measured at that point; —: nothing to compare or no value")
        lines.append("- ours vs best alternative: the fastest alternative's time over our fastest dense path's (named)")
        if counts := sorted({r["accuracy_rows"] for r in block if r["accuracy_rows"] is not None}):
            lines.append(
                f"- accuracy: our providers in the point's dtype vs the dense torch backend in float64 on the first"
                f" {' / '.join(map(str, counts))} reference rows: relative error of the loss · cosine of the gradients"
            )
        lines += ["", f"First-call overhead (compile / JIT: first call minus median), p={p}, q={q}, {dtype}:", ""]
        ran = [name for name in shown if _ok(block, name)]
        lines += _grid(block, ran, _first_call_overhead, []) + [""]
    return "\n".join(lines)


def _label(rows: list[Row], provider: str) -> str:
    """The provider, and where its series stopped: "reference (OOM from n=768)"."""
    last = max((r["n"] for r in _ok(rows, provider)), default=0)
    stops = sorted((r for r in rows if r["provider"] == provider and r["n"] > last), key=lambda r: r["n"])
    why = stops and ("too slow" if "too slow" in stops[0]["note"] else stops[0]["status"].replace("oom", "OOM"))
    return f"{provider} ({why} from n={stops[0]['n']})" if stops else provider


def _lines(rows: list[Row], kind: str) -> list[tuple[str, str, list[int], list[float], list | None]]:
    """(label, color, n, y, y error bars or None) of each line of one panel of plot ``kind``; one color per
    provider in every figure."""
    lines: list[tuple[str, str, list[int], list[float], list | None]] = []
    for index, name in enumerate(PROVIDERS):
        ok = _ok(rows, name)
        if kind == "time_vs_n.png" and ok:
            bars = [[r["median_s"] - r["p20_s"] for r in ok], [r["p80_s"] - r["median_s"] for r in ok]]
            lines.append((_label(rows, name), f"C{index}", [r["n"] for r in ok], [r["median_s"] for r in ok], bars))
        if kind == "memory_vs_n.png" and (drawn := [r for r in ok if r["peak_bytes"] > 0]):  # log axes: > 0 only
            megabytes = [r["peak_bytes"] / 2**20 for r in drawn]
            lines.append((_label(rows, name), f"C{index}", [r["n"] for r in drawn], megabytes, None))
    if kind == "speedup.png":
        pairs = [(f"{d} vs best of {', '.join(ALTERNATIVES)}", d, _best_alternative) for d in DENSE_OURS]
        pairs += [(f"{b} vs {d} (binned vs dense)", b, lambda t, d=d: t.get(d)) for b, d in BINNED.items()]
        for label, faster, slower in pairs:
            sizes = sorted({r["n"] for r in rows})
            points = [(n, slower(t) / t[faster]) for n in sizes if faster in (t := _at(rows, n)) and slower(t)]
            if points:
                color = f"C{PROVIDERS.index(faster)}"
                lines.append((label, color, [n for n, _ in points], [s for _, s in points], None))
    return lines


def figure(rows: list[Row], kind: str, title: str | None = None) -> Figure:
    """Plot ``kind`` (a key of PLOTS) of one device's rows: a log–log panel per (p, q, dtype, mode). The n axis
    is labelled at powers of two only (other sizes get unlabelled ticks), labels rotated: close sizes such as
    768 and 1024 never print into each other."""
    keys = [(*combo, mode) for combo in sorted({(r["p"], r["q"], r["dtype"]) for r in rows}) for mode in MODES]
    panels = [(key, at) for key in keys if (at := [r for r in rows if (r["p"], r["q"], r["dtype"], r["mode"]) == key])]
    ylabel = PLOTS[kind][1]
    columns = min(len(panels), 2)
    fig = Figure(figsize=(6.5 * columns, 5.5 * math.ceil(len(panels) / columns)), layout="constrained")
    for index, ((p, q, dtype, mode), at) in enumerate(panels):
        axis = fig.add_subplot(math.ceil(len(panels) / columns), columns, index + 1)
        for label, color, n, y, bars in _lines(at, kind):
            axis.errorbar(n, y, yerr=bars, marker="o", capsize=3, label=label, color=color)
        if kind == "speedup.png":
            axis.axhline(1.0, color="gray", linewidth=0.8, linestyle="--")
        sizes = sorted({r["n"] for r in at})
        powers = [2**k for k in range(int(math.log2(sizes[0])), math.ceil(math.log2(sizes[-1])) + 1)]
        axis.set_xscale("log", base=2)
        axis.set_xticks(powers, [str(v) for v in powers])
        axis.xaxis.set_minor_locator(NullLocator())
        axis.set_xticks([n for n in sizes if n not in powers], minor=True)
        axis.tick_params(axis="x", labelrotation=45)
        axis.set_yscale("log") if axis.has_data() else axis.text(0.5, 0.5, "nothing ran", ha="center")
        axis.set(xlabel="batch size n", ylabel=ylabel, title=f"{mode}, p={p}, q={q}, {dtype}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8) if axis.has_data() else None
    fig.suptitle(f"{title or PLOTS[kind][0]}\n{run_label(rows)}", fontsize=9, wrap=True)
    return fig


def fit_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """k of time ∝ n**k: least squares on log–log (needs two sizes or more)."""
    if len(set(sizes)) < 2:
        raise ValueError(f"sizes must hold at least two distinct n to fit an exponent; got {list(sizes)}")
    return float(numpy.polyfit(numpy.log(sizes), numpy.log(seconds), 1)[0])


def scaling_markdown(rows: list[Row]) -> str:
    """The scaling table: per n, median time, peak memory, time per candidate pair (time / n²), then the
    fitted exponent of time vs n over the points that ran (``fit_exponent``)."""
    lines = [f"Measured on {run_label(rows)}.", ""]
    lines += ["| n | time (median) | peak memory | time / n² |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["n"]):
        measured = r["status"] == "ok" and [format_seconds(r["median_s"]), format_bytes(r["peak_bytes"])]
        cells = [*measured, format_seconds(r["median_s"] / r["n"] ** 2)] if measured else [str(r["note"]), "", ""]
        lines.append("| " + " | ".join([str(r["n"]), *cells]) + " |")
    ok = [r for r in rows if r["status"] == "ok"]
    point = f"{ok[0]['provider']} {ok[0]['mode']}, p={ok[0]['p']}, q={ok[0]['q']}, {ok[0]['dtype']}" if ok else ""
    if len({r["n"] for r in ok}) >= 2:
        k = fit_exponent([r["n"] for r in ok], [r["median_s"] for r in ok])
        lines += ["", f"{point}: time ∝ n^{k:.2f} (least squares on log–log over n = {ok[0]['n']} … {ok[-1]['n']})."]
    return "\n".join(lines) + "\n"


def write_outputs(folder: Path, rows: list[Row], csv_name: str = "results.csv") -> tuple[str, list[Path]]:
    """Write the reports of one device's rows into ``folder``: for a sweep (results.csv), table.md and PLOTS;
    for the scaling table (scaling.csv), scaling.md and scaling.png (time vs n, the fitted exponent in its
    title). Return the markdown and the figures' paths."""
    folder.mkdir(parents=True, exist_ok=True)
    if csv_name == "scaling.csv":
        ok = [r for r in rows if r["status"] == "ok"]
        fit = f", time ∝ n^{fit_exponent([r['n'] for r in ok], [r['median_s'] for r in ok]):.2f}" if len(ok) > 1 else ""
        figures = {"scaling.png": figure(rows, "time_vs_n.png", f"binned scaling: time per call vs n{fit}")}
        text, table = scaling_markdown(rows), "scaling.md"
    else:
        figures, text, table = {name: figure(rows, name) for name in PLOTS}, markdown_tables(rows), "table.md"
    (folder / table).write_text(text, encoding="utf-8")
    for name, fig in figures.items():
        fig.savefig(folder / name, dpi=110)
    return text, [folder / name for name in figures]


def stored_results(results: Path, csv_name: str = "results.csv") -> dict[Path, list[Row]]:
    """Each device folder's latest full row per point from every ``csv_name`` below ``results`` (nested
    ones too, pooled by folder name); a ValueError if a folder mixes devices."""
    pooled: dict[Path, list[Row]] = {}
    for path in sorted(results.rglob(csv_name)):
        pooled.setdefault(results / path.parent.name, []).extend(load_rows(path))
    for folder, rows in pooled.items():
        if len({r["device"] for r in rows}) > 1:
            raise ValueError(f"{folder.name} mixes devices {sorted({r['device'] for r in rows})}; one per folder")
    latest = {folder: latest_per_point(rows) for folder, rows in pooled.items()}
    return dict(sorted(((f, r) for f, r in latest.items() if r), key=lambda item: (item[1][0]["device"], item[0].name)))


def benchmark_block(results: Path, readme_folder: Path) -> str:
    """The generated block: per device (CPU first; CPU and GPU never in one table or figure) the tables of
    each point's latest full measurement and its redrawn plots, then the binned scaling tables, each stored
    stage profile, the binned accuracy report, then the latest GPU floor check (floor.md)."""
    lines = ["<!-- generated by `python -m benchmarks readme` from stored results; do not edit by hand -->", ""]
    for csv_name in ("results.csv", "scaling.csv"):
        for folder, rows in stored_results(results, csv_name).items():
            text, figures = write_outputs(folder, rows, csv_name)
            kind = "Binned scaling, " if csv_name == "scaling.csv" else ""
            lines += [f"### {kind}{'CPU' if rows[0]['device'] == 'cpu' else 'GPU'}: {rows[0]['device_name']}", "", text]
            for path in figures:
                caption = PLOTS.get(path.name, ("binned scaling",))[0]
                lines.append(
                    f"![{caption}, {run_label(rows)}]({Path(os.path.relpath(path, readme_folder)).as_posix()})"
                )
            lines.append("")
    profiles = {path: path.stem.removeprefix("stages-").rsplit("-n", 1) for path in results.glob("*/stages-*-n*.md")}
    for path, (provider, n) in sorted(profiles.items(), key=lambda kv: (kv[0].parent.name, kv[1][0], int(kv[1][1]))):
        heading = f"### Where the time goes: {provider}, n = {n} ({path.parent.name}, `python -m benchmarks stages`)"
        lines += [heading, "", path.read_text(encoding="utf-8"), ""]
    if (accuracy := results / "binned_accuracy.md").exists():
        lines += ["### Binned accuracy (`python -m benchmarks accuracy`)", "", accuracy.read_text(encoding="utf-8"), ""]
    if not any(rows[0]["device"] == "cuda" for rows in stored_results(results).values()):
        lines += ["GPU: no full GPU sweep is stored yet (`python -m benchmarks sweep --device cuda`).", ""]
    if floors := sorted(results.rglob("floor.md"), key=lambda path: path.parent.name):
        lines += [f"### GPU floor check ({floors[-1].parent.name})", "", floors[-1].read_text(encoding="utf-8")]
    return "\n".join(lines)


def replace_block(text: str, block: str, markers: tuple[str, str] = (START_MARKER, END_MARKER)) -> str:
    """``text`` with everything between ``markers`` (default: the benchmark markers) replaced by ``block``."""
    start, end = text.find(markers[0]), text.find(markers[1])
    if start < 0 or end < start:
        raise ValueError(f"the file must contain {markers[0]} followed by {markers[1]}")
    return text[: start + len(markers[0])] + "\n" + block.strip() + "\n" + text[end:]
