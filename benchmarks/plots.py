"""PNG plots of one run on one device: time vs n, peak memory vs n, speedups (our dense providers vs
the best alternative, binned vs dense).

Each figure has one panel per (feature sizes, dtype) and mode, log-log axes, and a title naming the
device and the date of the run: a figure never mixes devices.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable, NamedTuple

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from .providers import ALTERNATIVES, BINNED_DENSE, DENSE_OURS, PROVIDERS  # noqa: E402
from .records import Row  # noqa: E402
from .throughput import MODES  # noqa: E402

MIB = 2**20
PLOT_FILES = ("time_vs_n.png", "memory_vs_n.png", "speedup.png")


class Line(NamedTuple):
    """One plotted line; ``low``/``high`` (optional) are drawn as error bars."""

    label: str
    color: str
    n: list[int]
    y: list[float]
    low: list[float] | None = None
    high: list[float] | None = None


def _distinct(rows: list[Row], field: str) -> str:
    return " / ".join(sorted({str(row[field]) for row in rows}))


def run_label(rows: list[Row]) -> str:
    """ "CPU: <name>, torch threads=2 — <date>, torch x, triton y, commit z" for rows of one device.

    Rows from several runs list every distinct date, version and commit.
    """
    first = rows[0]
    where = f"{str(first['device']).upper()}: {first['device_name']}"
    if first["device"] == "cpu":
        where += f", torch threads={_distinct(rows, 'threads')}"
    return (
        f"{where} — {_distinct(rows, 'date')}, torch {_distinct(rows, 'torch_version')}, "
        f"triton {_distinct(rows, 'triton_version')}, commit {_distinct(rows, 'commit')}"
    )


def _color(provider: str) -> str:
    """The same color for a provider in every figure."""
    return f"C{PROVIDERS.index(provider)}"


def _ok(rows: list[Row], provider: str) -> list[Row]:
    return sorted(
        (r for r in rows if r["provider"] == provider and r["status"] == "ok"), key=lambda r: r["n"]
    )


def stop_reason(row: Row) -> str:
    """Why a point has no measurement, in a word or two: "OOM", "too slow", "skipped" or "error"."""
    if row["status"] == "skipped" and "too slow" in str(row["note"]):
        return "too slow"
    return {"oom": "OOM", "error": "error"}.get(str(row["status"]), "skipped")


def _stop_label(rows: list[Row], provider: str) -> str:
    """The provider's name, plus where its series stopped ("OOM from n=768") if it did."""
    last_ok = max((r["n"] for r in _ok(rows, provider)), default=0)
    stops = sorted(
        (r for r in rows if r["provider"] == provider and r["status"] != "ok" and r["n"] > last_ok),
        key=lambda r: r["n"],
    )
    if not stops:
        return provider
    return f"{provider} ({stop_reason(stops[0])} from n={stops[0]['n']})"


def never_ran(rows: list[Row]) -> dict[str, str]:
    """Providers with no measured point in ``rows`` and one shared note, e.g. {"triton": "skipped (...)"}."""
    result = {}
    for provider in PROVIDERS:
        notes = {r["note"] for r in rows if r["provider"] == provider}
        if len(notes) == 1 and not any(r["provider"] == provider and r["status"] == "ok" for r in rows):
            result[provider] = str(notes.pop())
    return result


def _time_lines(rows: list[Row]) -> list[Line]:
    return [
        Line(
            _stop_label(rows, provider),
            _color(provider),
            [r["n"] for r in ok],
            [r["median_s"] for r in ok],
            [r["p20_s"] for r in ok],
            [r["p80_s"] for r in ok],
        )
        for provider in PROVIDERS
        if (ok := _ok(rows, provider))
    ]


def _memory_lines(rows: list[Row]) -> list[Line]:
    lines = []
    for provider in PROVIDERS:
        ok = _ok(rows, provider)
        if not ok:
            continue
        drawn = [r for r in ok if r["peak_bytes"] > 0]
        label = _stop_label(rows, provider)
        zero_n = [str(r["n"]) for r in ok if r["peak_bytes"] == 0]
        if zero_n:
            label += f"; no growth measured at n={','.join(zero_n)} (not drawn on log axes)"
        lines.append(
            Line(label, _color(provider), [r["n"] for r in drawn], [r["peak_bytes"] / MIB for r in drawn])
        )
    return lines


def best_alternative_s(rows: list[Row], n: int) -> float | None:
    """The fastest median time among the alternatives that ran at n, or None if none did."""
    times = [
        r["median_s"] for r in rows if r["n"] == n and r["provider"] in ALTERNATIVES and r["status"] == "ok"
    ]
    return min(times, default=None)


def binned_speedup(rows: list[Row], binned: str, n: int) -> float | None:
    """Dense time / binned time at n, for binned provider ``binned`` and the dense provider of its
    backend, or None unless both ran at n."""
    ok = {r["provider"]: r["median_s"] for r in rows if r["n"] == n and r["status"] == "ok"}
    dense = BINNED_DENSE[binned]
    return ok[dense] / ok[binned] if binned in ok and dense in ok else None


def _speedup_lines(rows: list[Row]) -> list[Line]:
    lines = []
    for provider in DENSE_OURS:
        pairs = [(r["n"], best_alternative_s(rows, r["n"]), r["median_s"]) for r in _ok(rows, provider)]
        pairs = [(n, alt / ours) for n, alt, ours in pairs if alt is not None]
        if pairs:
            n, speedup = zip(*pairs)
            label = f"{provider} vs best of {', '.join(ALTERNATIVES)}"
            lines.append(Line(label, _color(provider), list(n), list(speedup)))
    for binned, dense in BINNED_DENSE.items():
        sizes = sorted({r["n"] for r in rows})
        pairs = [(n, ratio) for n in sizes if (ratio := binned_speedup(rows, binned, n)) is not None]
        if pairs:
            n, speedup = zip(*pairs)
            label = f"{binned} vs {dense} (binned vs dense)"
            lines.append(Line(label, _color(binned), list(n), list(speedup)))
    return lines


def _panels(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    combos = sorted({(r["p"], r["q"], r["dtype"]) for r in rows})
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    return [
        (
            f"{mode}, p={p}, q={q}, {dtype}",
            [r for r in rows if (r["p"], r["q"], r["dtype"], r["mode"]) == (p, q, dtype, mode)],
        )
        for p, q, dtype in combos
        for mode in modes
    ]


def _draw(
    rows: list[Row],
    path: Path,
    title: str,
    ylabel: str,
    lines_of: Callable[[list[Row]], list[Line]],
    unit_line: bool,
) -> None:
    panels = _panels(rows)
    columns = min(len(panels), 2)
    height = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(height, columns, figsize=(6.5 * columns, 6.0 * height), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    for axis, (name, panel_rows) in zip(axes.flat, panels):
        lines = lines_of(panel_rows)
        for line in lines:
            spread = None
            if line.low is not None:
                spread = [
                    [y - low for y, low in zip(line.y, line.low)],
                    [high - y for y, high in zip(line.y, line.high)],
                ]
            axis.errorbar(
                line.n, line.y, yerr=spread, marker="o", capsize=3, label=line.label, color=line.color
            )
        for provider, note in never_ran(panel_rows).items():
            axis.plot([], [], " ", label=f"{provider}: {note}")
        if unit_line:
            axis.axhline(1.0, color="gray", linewidth=0.8, linestyle="--")
        axis.set_xscale("log", base=2)
        sizes = sorted({r["n"] for r in panel_rows})
        axis.set_xticks(sizes, [str(n) for n in sizes])
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        if any(y > 0 for line in lines for y in line.y):
            axis.set_yscale("log")
            axis.yaxis.set_major_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False))
            axis.yaxis.set_minor_formatter(
                matplotlib.ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5))
            )
        else:
            axis.text(0.5, 0.5, "no positive value to draw", transform=axis.transAxes, ha="center")
        axis.set_xlabel("batch size n")
        axis.set_ylabel(ylabel)
        axis.set_title(name, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    label = textwrap.fill(run_label(rows), width=int(12 * figure.get_figwidth()))
    figure.suptitle(f"{title}\n{label}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_plots(rows: list[Row], folder: Path) -> list[Path]:
    """Write the three PNG plots of one run's rows (one device) into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = (
        ("Time per call (median, bars: p20–p80)", "seconds", _time_lines, False),
        ("Peak memory of one call above its inputs", "MiB", _memory_lines, False),
        (
            "Speedup of A vs B: B's time / A's time (above 1: A is faster)",
            "speedup ×",
            _speedup_lines,
            True,
        ),
    )
    paths = []
    for file_name, (title, ylabel, lines_of, unit_line) in zip(PLOT_FILES, specs):
        _draw(rows, folder / file_name, title, ylabel, lines_of, unit_line)
        paths.append(folder / file_name)
    return paths
