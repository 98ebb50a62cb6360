"""The run's report: terminal tables, a comparison of "pc" with the best baseline, JSON and Markdown."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ..comparison import VERDICT_RULE, comparison, comparison_rows
from ..objectives import describe_pc_options
from ..provenance import describe, write_report_files
from ..tables import Stats, aligned, cell, markdown_table
from .config import TEACHER, UNTRAINED
from .evaluate import MEASURES
from .experiment import ExperimentResult

HEADERS = {
    "knn_accuracy": "5-NN acc",
    "recall_at_1": "R@1",
    "recall_at_5": "R@5",
    "spearman": "Spearman",
    "neighbour_overlap": "10-NN overlap",
    "seconds_per_step": "ms/step",
}


def _cell(value: Stats | None, name: str) -> str:
    return cell(value, 1000.0, 1) if name == "seconds_per_step" else cell(value)


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


def terminal_table(result: ExperimentResult) -> str:
    """The results as an aligned plain-text table (mean ± std over seeds; the mean alone for one seed),
    followed, when "pc" and a baseline were trained, by the comparison of pc with the best baseline."""
    text = aligned(table_rows(result))
    table = comparison(result.summary(), result.config.methods, result.config.widths, MEASURES)
    if table:
        rows = [["width", "measure", "pc − best", "best baseline", "verdict"]]
        for width, by_measure in table.items():
            for measure, c in by_measure.items():
                rows.append([str(width), HEADERS[measure], f"{c['difference']:+.3f}", c["best_method"], c["verdict"]])
        rule = f"pc against the best baseline per width and measure: {VERDICT_RULE.replace('`', '')}."
        text += "\n\n" + textwrap.fill(rule, width=100) + "\n" + aligned(rows)
    return text


def markdown_report(result: ExperimentResult, figures: list[str]) -> str:
    """The Markdown report: the command, settings, the table, "pc" against the best baseline, figures."""
    config, env, teacher = result.config, result.environment, result.teacher
    table = comparison(result.summary(), config.methods, config.widths, MEASURES)
    seeds = f"{config.seeds} seed(s) ({config.seed}..{config.seed + config.seeds - 1})"
    if config.seeds > 1:
        values = "Values are mean ± std over seeds (the teacher is a single model: its values alone)"
    else:
        values = "Values are single measurements: with one seed no spread is known"
    lines = [
        "# Distillation harness report",
        "",
        f"Command: `{result.command}` ({result.seconds:.0f} s of wall time, teacher and evaluation included).",
        "",
        describe(env),
        "",
        f"- Data: {result.data['name']}: {result.data['train']} training / {result.data['test']} held-out samples "
        f"of {result.data['features']} features (fixed stratified split).",
        f"- Teacher: MLP with {teacher['parameters']} parameters and {teacher['feature_dim']}-d features, "
        f"{config.teacher_epochs} epochs with labels.",
        f"- Students: MLP with {', '.join(f'{n} (width {w})' for w, n in teacher['student_parameters'].items())} "
        f"parameters, trained without labels for {config.student_epochs} epochs, batch {config.batch_size}, "
        f"Adam lr {config.lr}, {seeds}; perception coherence options: {describe_pc_options(config.pc_options)}.",
        f"- Evaluation distance: {config.eval_metric}. {values}; `ms/step` is the median "
        "wall time of one training step (forward, loss, backward, update).",
        "",
        "## Results",
        "",
        markdown_table(table_rows(result)),
        "",
    ]
    if table:
        lines += [
            "## Perception coherence against the best baseline",
            "",
            f"Per width and measure, pc against the baseline with the highest mean: {VERDICT_RULE}; "
            "the number is pc − best baseline.",
            "",
            markdown_table(comparison_rows(table, HEADERS)),
            "",
        ]
    lines += ["## Figures", ""] + [f"![{name}]({name})" for name in figures] + [""]
    return "\n".join(lines)


def write_report(result: ExperimentResult, folder: Path, figures: list[str]) -> list[Path]:
    """Write ``report.json`` and ``report.md`` into ``folder`` (created if missing); return their paths."""
    payload = result.to_json()
    payload["comparison"] = comparison(result.summary(), result.config.methods, result.config.widths, MEASURES)
    return write_report_files(folder, payload, markdown_report(result, figures))
