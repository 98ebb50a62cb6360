"""The run's report: a terminal table, a comparison of "pc" with the best baseline, JSON and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

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
OURS = "pc"
Summary = dict[str, dict[int, dict[str, dict[str, float]]]]


def _cell(stats: dict[str, float] | None, name: str) -> str:
    if stats is None:
        return "—"
    scale, digits = (1000.0, 1) if name == "seconds_per_step" else (1.0, 3)
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def table_rows(result: ExperimentResult) -> list[list[str]]:
    """Header row, then one row per model: the teacher, then per width the untrained student and each method."""
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
    """The results as an aligned plain-text table (mean ± std over seeds)."""
    rows = table_rows(result)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def comparison(summary: Summary, methods: tuple[str, ...], widths: tuple[int, ...]) -> dict[int, dict[str, dict]]:
    """width → measure → how "pc" compares with the best other distillation method.

    Each entry has "pc" and "best" (mean, std), "best_method", "difference" (pc − best) and
    "verdict": "better" or "worse" when the means differ by more than the larger of the two
    standard deviations, else "within 1 std". Empty when "pc" or every baseline is missing.
    """
    baselines = [m for m in methods if m != OURS]
    if OURS not in methods or not baselines:
        return {}
    out: dict[int, dict[str, dict]] = {}
    for width in widths:
        out[width] = {}
        for measure in MEASURES:
            ours = summary[OURS][width][measure]
            best_method = max(baselines, key=lambda m: summary[m][width][measure]["mean"])
            best = summary[best_method][width][measure]
            difference = ours["mean"] - best["mean"]
            if abs(difference) <= max(ours["std"], best["std"]):
                verdict = "within 1 std"
            else:
                verdict = "better" if difference > 0 else "worse"
            out[width][measure] = {
                "pc": ours,
                "best": best,
                "best_method": best_method,
                "difference": difference,
                "verdict": verdict,
            }
    return out


def _comparison_markdown(table: dict[int, dict[str, dict]]) -> str:
    rows = [["width", *(HEADERS[m] for m in MEASURES)]]
    for width, by_measure in table.items():
        cells = [f"{c['verdict']} ({c['difference']:+.3f} vs {c['best_method']})" for c in by_measure.values()]
        rows.append([str(width), *cells])
    return _markdown_table(rows)


def markdown_report(result: ExperimentResult, figures: list[str], command: str) -> str:
    """The Markdown report: the command, settings, the table, "pc" against the best baseline, figures."""
    config, env, teacher = result.config, result.environment, result.teacher
    table = comparison(result.summary(), config.methods, config.widths)
    seeds = f"{config.seeds} seed(s) ({config.seed}..{config.seed + config.seeds - 1})"
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
        f"- Evaluation distance: {config.eval_metric}. Values are mean ± std over seeds; `ms/step` is the median "
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
            "Per width and measure, pc against the baseline with the highest mean: `better` or `worse` when "
            "the means differ by more than the larger of the two standard deviations, else `within 1 std`; "
            "the number is pc − best baseline.",
            "",
            _comparison_markdown(table),
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
