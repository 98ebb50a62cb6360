"""The quality benchmark's report: the results per width, pc against the best baseline, the learning-rate
search, as Markdown (generated, never typed) and JSON, each with the command, machine, commit and wall time."""

from __future__ import annotations

import statistics
from pathlib import Path

from ..comparison import VERDICT_RULE, comparison, comparison_rows
from ..objectives import describe_pc_options
from ..provenance import describe, write_report_files
from ..tables import aligned, cell, markdown_table, stats
from .batch_study import LR_RULES, REFERENCE_BATCH, REGIMES, BatchStudyConfig, StudyRecord, StudyResult
from .config import MEASURES, QualityConfig
from .experiment import UNTRAINED, QualityResult
from .student import BAG_DIM, BUCKETS, HIDDEN

HEADERS = {
    "recall_at_1": "R@1",
    "recall_at_10": "R@10",
    "recall_at_50": "R@50",
    "ndcg_at_10": "nDCG@10",
    "spearman": "Spearman",
    "seconds_per_step": "ms/step",
}


def results_rows(result: QualityResult, width: int) -> list[list[str]]:
    """Header row, then the untrained student and each method at ``width``: mean ± std over seeds of every
    measure, the chosen learning rate and the median step time."""
    summary = result.summary()
    rows = [["method", "lr", *(HEADERS[m] for m in (*MEASURES, "seconds_per_step"))]]
    for method in (UNTRAINED, *result.config.methods):
        by_measure = summary[method][width]
        lr = result.selected_lr.get(method, {}).get(width)
        cells = [cell(by_measure[m]) for m in MEASURES]
        rows.append(
            [method, "—" if lr is None else f"{lr:g}", *cells, cell(by_measure.get("seconds_per_step"), 1e3, 1)]
        )
    return rows


def _search_rows(result: QualityResult) -> list[list[str]]:
    """Header row, then per width and method the validation measure at every rate tried (``—`` for a rate
    not tried: a method with a fixed rate tries only that one), the chosen one in bold."""
    search, config = result.lr_search(), result.config
    rates = sorted({lr for method in config.methods for lr in config.lr_candidates(method)})
    rows = [["width", "method", *(f"lr {lr:g}" for lr in rates)]]
    for width in config.widths:
        for method in config.methods:
            values, best = search[method][width], result.selected_lr[method][width]
            cells = (
                "—" if lr not in values else f"**{values[lr]:.3f}**" if lr == best else f"{values[lr]:.3f}"
                for lr in rates
            )
            rows.append([str(width), method, *cells])
    return rows


def _lr_choice(config: QualityConfig) -> str:
    """How the learning rates were chosen, in words."""
    searched = [m for m in config.methods if m not in config.method_lr]
    parts = []
    if searched:
        grid = ", ".join(f"{lr:g}" for lr in config.lr_grid)
        methods = "every method" if len(searched) == len(config.methods) else ", ".join(searched)
        parts.append(
            f"for {methods} and every width the best of {grid} by validation {HEADERS[config.select_by]} "
            f"at seed {config.seed}"
        )
    if config.method_lr:
        fixed = ", ".join(f"{m} {lr:g}" for m, lr in config.method_lr.items())
        parts.append(f"fixed, with no search, at every width: {fixed}")
    return "; ".join(parts)


def terminal_table(result: QualityResult) -> str:
    """The results per width as aligned plain-text tables."""
    return "\n\n".join(f"d = {w}\n{aligned(results_rows(result, w))}" for w in result.config.widths)


def markdown_report(result: QualityResult) -> str:
    """The Markdown report (see the module doc)."""
    config, data = result.config, result.data
    seeds = f"{config.seeds} seeds ({config.seed}..{config.seed + config.seeds - 1})"
    table = comparison(result.summary(), config.methods, config.widths, MEASURES)
    lines = [
        "# Distillation quality on a real teacher",
        "",
        f"Command: `{result.command}` ({result.seconds:.0f} s of wall time, teacher embeddings "
        f"{'read from the cache' if data['teacher_cached'] else 'computed, included'}).",
        "",
        describe(result.environment),
        "",
        f"- Teacher: {data['teacher']}. Corpus `{data['corpus']}`: "
        f"{data['train'] + data['validation'] + data['test']} of its {data['corpus_size']} sentences, split "
        f"{data['train']} train / {data['validation']} validation / {data['test']} test.",
        f"- Student: hashed word unigrams and bigrams → EmbeddingBag({BUCKETS}, {BAG_DIM}, mean) → "
        f"Linear({BAG_DIM}, {HIDDEN}) → ReLU → Linear({HIDDEN}, d); SparseAdam for the table, Adam for the rest; "
        f"batch {config.batch_size}, {config.epochs} epochs, {seeds}.",
        f"- Learning rate: {_lr_choice(config)}.",
        f"- Perception coherence options: {describe_pc_options(config.pc_options)}.",
        "- Measures, on the test sentences against the teacher's cosine neighbours among them: R@k, the fraction "
        "of the teacher's k nearest neighbours among the student's k nearest; nDCG@10 with the teacher's top 10 "
        "as graded relevance; Spearman, the mean per-query rank correlation of all distances. Mean ± std over "
        "seeds; `ms/step` the median wall time of a training step.",
        "",
    ]
    for width in config.widths:
        lines += [f"## d = {width}", "", markdown_table(results_rows(result, width)), ""]
    if table:
        lines += [
            "## Perception coherence against the best baseline",
            "",
            f"Per width and measure, pc against the baseline with the highest mean: {VERDICT_RULE}.",
            "",
            markdown_table(comparison_rows(table, HEADERS)),
            "",
        ]
    lines += [
        f"## Learning-rate search (validation {HEADERS[config.select_by]}, seed {config.seed}; chosen in bold)",
        "",
        markdown_table(_search_rows(result)),
        "",
    ]
    return "\n".join(lines)


def write_report(result: QualityResult, folder: Path) -> list[Path]:
    """Write ``report.json`` and ``report.md`` into ``folder`` (created if missing); return their paths."""
    payload = result.to_json()
    payload["comparison"] = comparison(result.summary(), result.config.methods, result.config.widths, MEASURES)
    return write_report_files(folder, payload, markdown_report(result))


def study_rows(result: StudyResult, regime: str) -> list[list[str]]:
    """Header row, then per (width, method, batch size) of ``regime``: the learning rate, the mean steps,
    epochs and seconds of training, and mean ± std over seeds of R@10, nDCG@10 and Spearman."""
    shown = ("recall_at_10", "ndcg_at_10", "spearman")
    rows = [["d", "method", "batch", "lr", "steps", "epochs", "train s", *(HEADERS[m] for m in shown)]]
    groups: dict[tuple[int, str, int], list[StudyRecord]] = {}
    for r in result.records:
        if r.regime == regime:
            groups.setdefault((r.width, r.method, r.batch_size), []).append(r)
    for (width, method, batch_size), records in groups.items():
        rows.append(
            [
                str(width),
                method,
                str(batch_size),
                f"{records[0].lr:.3g}",
                f"{statistics.fmean(r.steps for r in records):g}",
                f"{statistics.fmean(r.epochs for r in records):g}",
                f"{statistics.fmean(r.seconds for r in records):.0f}",
                *(cell(stats([r.metrics[m] for r in records])) for m in shown),
            ]
        )
    return rows


def _study_rates(config: BatchStudyConfig) -> str:
    """Each method's learning rate at batch 256, in words."""
    return ", ".join(f"{m} {config.learning_rate(m, REFERENCE_BATCH):g}" for m in config.base.methods)


def study_markdown(result: StudyResult) -> str:
    """The batch-size study's Markdown report."""
    config, base, data = result.config, result.config.base, result.data
    budgets = {
        "equal epochs": f"{config.epochs} epochs",
        "equal steps": f"{config.steps} steps",
        "equal wall-clock": f"{config.seconds:g} s of step time",
    }
    lines = [
        "# Batch-size study",
        "",
        f"Command: `{result.command}` ({result.seconds:.0f} s of wall time).",
        "",
        describe(result.environment),
        "",
        f"- Corpus `{data['corpus']}`: {data['train']} train / {data['test']} test sentences; the benchmark's "
        f"student and measures; {base.seeds} seed(s) from {base.seed}; perception coherence options: "
        f"{describe_pc_options(base.pc_options)}.",
        f"- Learning rate at batch 256: {_study_rates(config)}; scaled by the {config.lr_rule!r} rule "
        f"(lr × (B / 256) ** {LR_RULES[config.lr_rule]:g}).",
        "- Wall-clock budgets count step time only and depend on the machine and its load (see the line above).",
        "",
    ]
    for regime in REGIMES:
        lines += [f"## {regime.capitalize()}: {budgets[regime]}", "", markdown_table(study_rows(result, regime)), ""]
    return "\n".join(lines)


def write_study_report(result: StudyResult, folder: Path) -> list[Path]:
    """Write the study's ``report.json`` and ``report.md`` into ``folder``; return their paths."""
    return write_report_files(folder, result.to_json(), study_markdown(result))
