"""The run's report: terminal tables, a comparison of "pc" with the best baseline, JSON and Markdown."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TypedDict

from .config import TEACHER, UNTRAINED
from .evaluate import MEASURES
from .experiment import ExperimentResult, Stats, Summary

HEADERS = {
    "knn_accuracy": "5-NN acc",
    "recall_at_1": "R@1",
    "recall_at_5": "R@5",
    "spearman": "Spearman",
    "neighbour_overlap": "10-NN overlap",
    "seconds_per_step": "ms/step",
}
OURS = "pc"
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


def _cell(stats: Stats | None, name: str) -> str:
    if stats is None:
        return "—"
    scale, digits = (1000.0, 1) if name == "seconds_per_step" else (1.0, 3)
    mean = f"{stats['mean'] * scale:.{digits}f}"
    return mean if stats["std"] is None else f"{mean} ± {stats['std'] * scale:.{digits}f}"


def table_rows(result: ExperimentResult) -> list[list[str]]:
    """Header row, then one row per model: the teacher, then per width the untrained student and each method.

    Cells are "mean ± std" over seeds, or the mean alone for a single seed (and for the teacher).
    """
    summary = result.summary()
    columns = [*MEASURES, "seconds_per_step"]
    rows = [["width", "method", *(HEADERS[c] for c in columns)]]
    order = [(TEACHER, w) for w in summary[TEACHER]]
    order += [(m, w) for w in result.config.widths for m in (UNTRAINED, *result.config.methods)]
    for method, width in order:
        stats = summary[method][width]
        rows.append([str(width), method, *(_cell(stats.get(c), c) for c in columns)])
    return rows


def _aligned(rows: list[list[str]]) -> str:
    """Rows of cells as right-aligned plain-text columns, a rule under the header row."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def terminal_table(result: ExperimentResult) -> str:
    """The results as an aligned plain-text table (mean ± std over seeds; the mean alone for one seed),
    followed, when "pc" and a baseline were trained, by the comparison of pc with the best baseline."""
    text = _aligned(table_rows(result))
    table = comparison(result.summary(), result.config.methods, result.config.widths)
    if table:
        rows = [["width", "measure", "pc − best", "best baseline", "verdict"]]
        for width, by_measure in table.items():
            for measure, c in by_measure.items():
                rows.append([str(width), HEADERS[measure], f"{c['difference']:+.3f}", c["best_method"], c["verdict"]])
        rule = f"pc against the best baseline per width and measure: {VERDICT_RULE.replace('`', '')}."
        text += "\n\n" + textwrap.fill(rule, width=100) + "\n" + _aligned(rows)
    return text


def _markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def verdict(pc: Stats, best: Stats) -> str:
    """``NO_SPREAD`` if either mean is over one seed; else ``BETTER``/``WORSE`` when pc's mean is above/below
    the best baseline's by more than the larger of the two standard deviations, else ``WITHIN_ONE_STD``."""
    if pc["std"] is None or best["std"] is None:
        return NO_SPREAD
    difference = pc["mean"] - best["mean"]
    if abs(difference) <= max(pc["std"], best["std"]):
        return WITHIN_ONE_STD
    return BETTER if difference > 0 else WORSE


def comparison(summary: Summary, methods: tuple[str, ...], widths: tuple[int, ...]) -> dict[int, dict[str, Comparison]]:
    """width → measure → how "pc" compares with the best other distillation method.

    Each entry has "pc" and "best" (their ``Stats``), "best_method" (the baseline with the highest
    mean), "difference" (pc − best, means) and "verdict" (see ``verdict``). Empty when "pc" or
    every baseline is missing.
    """
    baselines = [m for m in methods if m != OURS]
    if OURS not in methods or not baselines:
        return {}
    out: dict[int, dict[str, Comparison]] = {}
    for width in widths:
        out[width] = {}
        for measure in MEASURES:
            ours = summary[OURS][width][measure]
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


def _comparison_rows(table: dict[int, dict[str, Comparison]]) -> list[list[str]]:
    rows = [["width", *(HEADERS[m] for m in MEASURES)]]
    for width, by_measure in table.items():
        cells = [f"{c['verdict']} ({c['difference']:+.3f} vs {c['best_method']})" for c in by_measure.values()]
        rows.append([str(width), *cells])
    return rows


def markdown_report(result: ExperimentResult, figures: list[str], command: str) -> str:
    """The Markdown report: the command, settings, the table, "pc" against the best baseline, figures."""
    config, env, teacher = result.config, result.environment, result.teacher
    table = comparison(result.summary(), config.methods, config.widths)
    seeds = f"{config.seeds} seed(s) ({config.seed}..{config.seed + config.seeds - 1})"
    if config.seeds > 1:
        values = "Values are mean ± std over seeds (the teacher is a single model: its values alone)"
    else:
        values = "Values are single measurements: with one seed no spread is known"
    lines = [
        "# Distillation harness report",
        "",
        f"Command: `{command}`",
        "",
        f"Run on {env['hardware']} (device `{env['device']}`, torch threads: {env['torch_threads']}), "
        f"{env['date_utc']} UTC, torch {env['torch']}, perception coherence backend `{env['pc_backend']}`.",
        "",
        f"- Data: {result.data['name']}: {result.data['train']} training / {result.data['test']} held-out samples "
        f"of {result.data['features']} features (fixed stratified split).",
        f"- Teacher: MLP with {teacher['parameters']} parameters and {teacher['feature_dim']}-d features, "
        f"{config.teacher_epochs} epochs with labels.",
        f"- Students: MLP with {', '.join(f'{n} (width {w})' for w, n in teacher['student_parameters'].items())} "
        f"parameters, trained without labels for {config.student_epochs} epochs, batch {config.batch_size}, "
        f"Adam lr {config.lr}, {seeds}; perception coherence τ = {config.tau}.",
        f"- Evaluation distance: {config.eval_metric}. {values}; `ms/step` is the median "
        "wall time of one training step (forward, loss, backward, update).",
        "",
        "## Results",
        "",
        _markdown_table(table_rows(result)),
        "",
    ]
    if table:
        lines += [
            "## Perception coherence against the best baseline",
            "",
            f"Per width and measure, pc against the baseline with the highest mean: {VERDICT_RULE}; "
            "the number is pc − best baseline.",
            "",
            _markdown_table(_comparison_rows(table)),
            "",
        ]
    lines += ["## Figures", ""] + [f"![{name}]({name})" for name in figures] + [""]
    return "\n".join(lines)


def write_report(result: ExperimentResult, folder: Path, figures: list[str], command: str) -> list[Path]:
    """Write ``report.json`` and ``report.md`` into ``folder`` (created if missing); return their paths.

    ``command`` is the command line that produced ``result`` (recorded in both files).
    """
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, **result.to_json()}
    payload["comparison"] = comparison(result.summary(), result.config.methods, result.config.widths)
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    markdown_path = folder / "report.md"
    markdown_path.write_text(markdown_report(result, figures, command), encoding="utf-8")
    return [json_path, markdown_path]
