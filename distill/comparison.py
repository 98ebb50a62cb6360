"""Perception coherence against the best baseline, per width and measure, with a verdict that respects
the spread over seeds."""

from __future__ import annotations

from typing import TypedDict

from .objectives import PC
from .tables import Stats, Summary

# The verdicts of ``comparison``.
BETTER = "better"
WORSE = "worse"
WITHIN_ONE_STD = "within 1 std"
NO_SPREAD = "n/a (1 seed)"
VERDICT_RULE = (
    f"`{BETTER}` or `{WORSE}` when the means differ by more than the larger of the two standard deviations, "
    f"else `{WITHIN_ONE_STD}`; `{NO_SPREAD}` when a mean is over a single seed, whose spread is unknown"
)


class Comparison(TypedDict):
    """How "pc" compares with the best baseline on one measure at one width (see ``comparison``)."""

    pc: Stats
    best: Stats
    best_method: str
    difference: float
    verdict: str


def verdict(pc: Stats, best: Stats) -> str:
    """``NO_SPREAD`` if either mean is over one seed; else ``BETTER``/``WORSE`` when pc's mean is above/below
    the best baseline's by more than the larger of the two standard deviations, else ``WITHIN_ONE_STD``."""
    if pc["std"] is None or best["std"] is None:
        return NO_SPREAD
    difference = pc["mean"] - best["mean"]
    if abs(difference) <= max(pc["std"], best["std"]):
        return WITHIN_ONE_STD
    return BETTER if difference > 0 else WORSE


def comparison(
    summary: Summary, methods: tuple[str, ...], widths: tuple[int, ...], measures: tuple[str, ...]
) -> dict[int, dict[str, Comparison]]:
    """width → measure → how "pc" compares with the best other distillation method (higher is better).

    Each entry has "pc" and "best" (their ``Stats``), "best_method" (the baseline with the highest
    mean), "difference" (pc − best, means) and "verdict" (see ``verdict``). Empty when "pc" or
    every baseline is missing.
    """
    baselines = [m for m in methods if m != PC]
    if PC not in methods or not baselines:
        return {}
    out: dict[int, dict[str, Comparison]] = {}
    for width in widths:
        out[width] = {}
        for measure in measures:
            ours = summary[PC][width][measure]
            best_method = max(baselines, key=lambda m: summary[m][width][measure]["mean"])
            best = summary[best_method][width][measure]
            out[width][measure] = {
                "pc": ours,
                "best": best,
                "best_method": best_method,
                "difference": ours["mean"] - best["mean"],
                "verdict": verdict(ours, best),
            }
    return out


def comparison_rows(table: dict[int, dict[str, Comparison]], headers: dict[str, str]) -> list[list[str]]:
    """Header row (width, then each measure's header), then per width the verdict and difference of each
    measure against its best baseline."""
    measures = next(iter(table.values())).keys()
    rows = [["width", *(headers[m] for m in measures)]]
    for width, by_measure in table.items():
        cells = [f"{c['verdict']} ({c['difference']:+.3f} vs {c['best_method']})" for c in by_measure.values()]
        rows.append([str(width), *cells])
    return rows
