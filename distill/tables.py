"""Statistics over seeds and the tables that show them (plain text for the terminal, Markdown for reports)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Protocol, TypedDict


class Stats(TypedDict):
    """One measure of one model over its seeds.

    Keys:
        mean: the mean over seeds.
        std: the sample standard deviation over seeds (ddof = 1); ``None`` (JSON null) for a
            single seed, whose spread is unknown.
        seeds: how many seeds the mean is over.
    """

    mean: float
    std: float | None
    seeds: int


def stats(values: list[float]) -> Stats:
    """Mean, sample standard deviation (``None`` for one value) and count of ``values``."""
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "seeds": len(values)}


def cell(value: Stats | None, scale: float = 1.0, digits: int = 3) -> str:
    """ "mean ± std" of ``value`` × ``scale`` with ``digits`` decimals; the mean alone without a spread; "—"
    for ``None``."""
    if value is None:
        return "—"
    mean = f"{value['mean'] * scale:.{digits}f}"
    return mean if value["std"] is None else f"{mean} ± {value['std'] * scale:.{digits}f}"


def aligned(rows: list[list[str]]) -> str:
    """Rows of cells as right-aligned plain-text columns, a rule under the header row."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(rows: list[list[str]]) -> str:
    """Rows of cells as a Markdown table, the first row its header."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


# method → width → measure → its statistics over seeds.
Summary = dict[str, dict[int, dict[str, Stats]]]


class Measured(Protocol):
    """A record of one evaluated model: its method, width, measures and (if trained) median step time."""

    method: str
    width: int
    metrics: dict[str, float]
    seconds_per_step: float | None


def summarize(records: Iterable[Measured], measures: tuple[str, ...]) -> Summary:
    """method → width → each of ``measures`` (and "seconds_per_step" where known) → ``Stats`` over the
    records of that method and width (one per seed)."""
    grouped: dict[str, dict[int, list[Measured]]] = {}
    for record in records:
        grouped.setdefault(record.method, {}).setdefault(record.width, []).append(record)
    out: Summary = {}
    for method, by_width in grouped.items():
        for width, group in by_width.items():
            values = {m: [r.metrics[m] for r in group] for m in measures}
            step_times = [r.seconds_per_step for r in group if r.seconds_per_step is not None]
            if step_times:
                values["seconds_per_step"] = step_times
            out.setdefault(method, {})[width] = {name: stats(v) for name, v in values.items()}
    return out
