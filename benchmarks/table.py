"""Markdown tables of one run: time and peak memory per provider, speedups, accuracy, throughput and
compile time.

Speedups: "ours (dense) vs best alternative" compares the fastest of our exact (dense) providers
with the fastest alternative (both compute the same loss exactly); "binned vs dense" is each binned
provider's speedup over the dense provider of its backend (torch_binned vs torch, triton_binned vs
triton) where both ran. The accuracy column gives each of our providers' loss relative error and
gradient cosine against the dense float64 torch backend on the point's own inputs.
"""

from __future__ import annotations

from typing import Callable

from .plots import best_alternative_s, binned_speedup, never_ran, run_label, stop_reason
from .providers import BINNED_DENSE, DENSE_OURS, OURS, PROVIDERS
from .records import Row
from .throughput import MODES


def _scaled(value: float, units: tuple[tuple[str, float], ...]) -> str:
    """``value`` in the largest unit it reaches, with three significant digits (never 1e+03)."""
    unit, scale = next(((u, s) for u, s in units if value >= s), units[-1])
    text = f"{value / scale:.3g}"
    return f"{value / scale:.0f} {unit}" if "e" in text else f"{text} {unit}"


def format_seconds(seconds: float) -> str:
    """A duration with three significant digits in s, ms or µs."""
    return _scaled(seconds, (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)))


def format_bytes(size: int) -> str:
    """A size with three significant digits in GiB, MiB or KiB."""
    return _scaled(size, (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)))


def _time_memory(row: Row) -> str:
    if row["status"] != "ok":
        return str(row["note"])
    return f"{format_seconds(row['median_s'])} · {format_bytes(row['peak_bytes'])}"


def _compile(row: Row) -> str:
    if row["status"] != "ok":
        return "—"
    return format_seconds(row["compile_s"])


def _best_dense_ours(rows: list[Row]) -> Row | None:
    ran = [r for r in rows if r["provider"] in DENSE_OURS and r["status"] == "ok"]
    return min(ran, key=lambda r: r["median_s"], default=None)


def _speedup(rows: list[Row]) -> str:
    ours = _best_dense_ours(rows)
    if ours is None:
        return "— (no dense provider of ours ran)"
    alternative = best_alternative_s(rows, ours["n"])
    if alternative is None:
        return f"— (no alternative ran; {ours['provider']} did)"
    return f"{alternative / ours['median_s']:.3g}× ({ours['provider']})"


def _binned_vs_dense(rows: list[Row]) -> str:
    n = rows[0]["n"]
    ratios = {binned: binned_speedup(rows, binned, n) for binned in BINNED_DENSE}
    cells = [
        f"{ratio:.3g}× ({binned} vs {BINNED_DENSE[binned]})" for binned, ratio in ratios.items() if ratio is not None
    ]
    return "; ".join(cells) or "—"


def format_cosine(value: float) -> str:
    """A cosine similarity; close to 1 as "1−1.2e-09", so that its distance to 1 shows."""
    gap = 1.0 - value
    if gap <= 0:
        return "1"
    return f"1−{gap:.2g}" if gap < 1e-3 else f"{value:.4g}"


def _accuracy_rows(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r["provider"] in OURS and r["loss_rel_error"] is not None]


def _accuracy(rows: list[Row], show_rows: bool) -> str:
    cells = [
        f"{r['provider']} {r['loss_rel_error']:.2g} · {format_cosine(r['grad_cosine'])}"
        + (f" ({r['accuracy_rows']} rows)" if show_rows else "")
        for r in sorted(_accuracy_rows(rows), key=lambda r: OURS.index(r["provider"]))
    ]
    return "; ".join(cells) or "—"


def _accuracy_note(rows: list[Row]) -> list[str]:
    """The line that says what the accuracy column compares, and on how many reference rows."""
    counts = sorted({r["accuracy_rows"] for r in _accuracy_rows(rows)})
    if not counts:
        return []
    return [
        "- accuracy: each of our providers (in the point's dtype) vs the dense torch backend in float64,"
        f" same inputs, first {' / '.join(str(c) for c in counts)} reference rows (n if smaller):"
        " relative error of the mean loss · cosine similarity of the student gradients"
    ]


def _throughput(rows: list[Row]) -> str:
    ours = _best_dense_ours(rows)
    if ours is None:
        return "—"
    text = f"{ours['evals_per_s']:.3g} ({ours['provider']})"
    if ours["floor_fraction"] is not None:
        text += f", {100 * ours['floor_fraction']:.3g}% of floor"
    return text


def _largest_ran(rows: list[Row], providers: list[str]) -> list[str]:
    """Per mode, a line naming the largest n each provider ran and why it stopped there."""
    lines = []
    swept = max(r["n"] for r in rows)
    for mode in MODES:
        parts = []
        for provider in providers:
            series = sorted(
                (r for r in rows if r["mode"] == mode and r["provider"] == provider), key=lambda r: r["n"]
            )
            ran = [r["n"] for r in series if r["status"] == "ok"]
            if not ran:
                continue
            above = [r for r in series if r["n"] > ran[-1]]
            if above:
                why = stop_reason(above[0]) + " above"
            else:  # rows pooled from several runs may sweep some providers further than others
                why = "largest swept" if ran[-1] == swept else "not swept above"
            parts.append(f"{provider} {ran[-1]} ({why})")
        if parts:
            lines.append(f"- largest n that ran, {mode}: " + ", ".join(parts))
    return lines


def _grid(
    rows: list[Row],
    providers: list[str],
    cell: Callable[[Row], str],
    extra: dict[str, Callable[[list[Row]], str]],
) -> list[str]:
    """One markdown table: a line per (mode, n), a column per provider, then ``extra`` columns."""
    header = ["mode", "n", *providers, *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode in MODES:
        for n in sorted({r["n"] for r in rows if r["mode"] == mode}):
            at = [r for r in rows if r["mode"] == mode and r["n"] == n]
            by_provider = {r["provider"]: r for r in at}
            cells = [mode, str(n), *(cell(by_provider[p]) if p in by_provider else "" for p in providers)]
            cells += [column(at) for column in extra.values()]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown_tables(rows: list[Row]) -> str:
    """Markdown for one run's rows (one device): a labelled block per (p, q, dtype)."""
    floor_note = " and fraction of the SPEC.md H100 floor" if rows[0]["device"] == "cuda" else ""
    lines = [f"Measured on {run_label(rows)}.", ""]
    for p, q, dtype in sorted({(r["p"], r["q"], r["dtype"]) for r in rows}):
        block = [r for r in rows if (r["p"], r["q"], r["dtype"]) == (p, q, dtype)]
        lines += [
            f"**Student dim p={p}, teacher dim q={q}, {dtype}**:"
            " median time per call · peak memory above inputs",
            "",
        ]
        absent = never_ran(block)
        present = [p for p in PROVIDERS if p not in absent and any(r["provider"] == p for r in block)]
        ran = [p for p in present if any(r["provider"] == p and r["status"] == "ok" for r in block)]
        show_rows = len({r["accuracy_rows"] for r in _accuracy_rows(block)}) > 1
        columns = {"ours (dense) vs best alternative": _speedup}
        if any(p in BINNED_DENSE for p in present):
            columns["binned vs dense"] = _binned_vs_dense
        columns["accuracy: loss rel. err · grad cos"] = lambda at: _accuracy(at, show_rows)
        columns[f"sigmoid evaluations/s of ours (dense){floor_note}"] = _throughput
        lines += _grid(block, present, _time_memory, columns)
        lines += ["", *_largest_ran(block, ran), *_accuracy_note(block)]
        lines += [f"- not run: {provider} — {note}" for provider, note in absent.items()]
        lines += [
            "",
            f"First-call overhead (compile / JIT; first call minus median), p={p}, q={q}, {dtype}:",
            "",
        ]
        lines += _grid(block, ran, _compile, {})
        lines.append("")
    return "\n".join(lines)
