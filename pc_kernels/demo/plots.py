"""The run's figures: bar charts of the main measures, and a 2-D view of the held-out embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .config import TEACHER, UNTRAINED
from .experiment import ExperimentResult

BAR_MEASURES = (
    ("knn_accuracy", "5-NN accuracy"),
    ("spearman", "Spearman vs teacher"),
    ("neighbour_overlap", "10-NN overlap with teacher"),
)


def plot_measures(result: ExperimentResult, path: Path) -> None:
    """Grouped bars (one group per width, one bar per method, std error bars); the teacher as a dashed line."""
    summary = result.summary()
    methods = [UNTRAINED, *result.config.methods]
    widths = result.config.widths
    teacher = next(iter(summary[TEACHER].values()))
    figure = Figure(figsize=(5 * len(BAR_MEASURES), 4))
    axes = figure.subplots(1, len(BAR_MEASURES), squeeze=False)
    bar = 0.8 / len(methods)
    positions = np.arange(len(widths))
    for axis, (measure, title) in zip(axes[0], BAR_MEASURES, strict=True):
        for i, method in enumerate(methods):
            stats = [summary[method][w][measure] for w in widths]
            axis.bar(
                positions + (i - (len(methods) - 1) / 2) * bar,
                [s["mean"] for s in stats],
                bar,
                yerr=[0.0 if s["std"] is None else s["std"] for s in stats],  # none drawn for one seed
                label=method,
                capsize=2,
            )
        axis.axhline(teacher[measure]["mean"], color="black", linestyle="--", linewidth=1, label=TEACHER)
        axis.set_xticks(positions, [str(w) for w in widths])
        axis.set_xlabel("student embedding width")
        axis.set_title(title)
        axis.set_ylim(0, 1.02)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    figure.savefig(path, dpi=110)


def _two_dimensional(points: np.ndarray) -> tuple[np.ndarray, str]:
    """(n, d) → (n, 2): the points themselves if d == 2, else their top-2 principal components."""
    if points.shape[1] == 2:
        return points, ""
    centred = points - points.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T, " (PCA)"


def plot_embeddings(result: ExperimentResult, path: Path) -> None:
    """Scatter of the held-out embeddings at the smallest width (first seed), coloured by label."""
    width = min(result.config.widths)
    panels = [(TEACHER, next(w for m, w in result.embeddings if m == TEACHER))]
    panels += [(m, width) for m in (UNTRAINED, *result.config.methods)]
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(3.2 * columns, 3.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.axis("off")
    for axis, (method, dim) in zip(axes.flat, panels, strict=False):
        points, how = _two_dimensional(result.embeddings[(method, dim)])
        axis.scatter(points[:, 0], points[:, 1], c=result.test_labels, cmap="tab10", s=4)
        axis.set_title(f"{method}, {dim}-d{how}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("held-out embeddings, coloured by label (labels unused in distillation)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write_figures(result: ExperimentResult, folder: Path) -> list[str]:
    """Write ``measures.png`` and ``embeddings.png`` into ``folder``; return their file names."""
    folder.mkdir(parents=True, exist_ok=True)
    plot_measures(result, folder / "measures.png")
    plot_embeddings(result, folder / "embeddings.png")
    return ["measures.png", "embeddings.png"]
