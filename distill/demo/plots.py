"""The run's figures: the main measures with pc against the best baseline, and a 2-D view of the embeddings."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..comparison import comparison
from ..objectives import PC as OURS
from .config import TEACHER, UNTRAINED
from .evaluate import MEASURES
from .experiment import ExperimentResult
from .report import HEADERS

PLOTTED_MEASURES = (
    ("knn_accuracy", "5-NN accuracy"),
    ("spearman", "Spearman vs teacher"),
    ("neighbour_overlap", "10-NN overlap with teacher"),
)
# Space added above and below the plotted data, as a fraction of its range.
AXIS_MARGIN = 0.08


def fitted_limits(values: Iterable[float], margin: float = AXIS_MARGIN) -> tuple[float, float]:
    """y-axis limits that hold every value with ``margin`` × their range to spare on each side.

    A zero range (one value, or all equal) gets ± 0.01 around the value.
    """
    array = np.asarray(list(values), dtype=float)
    low, high = float(array.min()), float(array.max())
    spare = margin * (high - low) if high > low else 0.01
    return low - spare, high + spare


def _std(value: float | None) -> float:
    """A spread for an error bar: 0 when it is unknown (one seed)."""
    return 0.0 if value is None else value


def _error_bars(spreads: np.ndarray) -> np.ndarray | None:
    """``spreads`` for ``errorbar``'s yerr, or ``None`` (no bars, no caps) when every one is unknown (0)."""
    return spreads if spreads.any() else None


def _values_panel(axis: Axes, result: ExperimentResult, measure: str, title: str) -> None:
    """Each method's mean ± std at each width as points with error bars; the teacher as a dashed line."""
    summary = result.summary()
    methods = [UNTRAINED, *result.config.methods]
    widths = result.config.widths
    teacher = next(iter(summary[TEACHER].values()))[measure]["mean"]
    step = 0.8 / len(methods)
    positions = np.arange(len(widths))
    ends = [teacher]
    for i, method in enumerate(methods):
        stats = [summary[method][w][measure] for w in widths]
        means = np.array([s["mean"] for s in stats])
        stds = np.array([_std(s["std"]) for s in stats])
        axis.errorbar(
            positions + (i - (len(methods) - 1) / 2) * step,
            means,
            yerr=_error_bars(stds),
            fmt="o",
            markersize=4,
            capsize=2,
            linewidth=1,
            label=method,
        )
        ends += [*(means - stds), *(means + stds)]
    axis.axhline(teacher, color="black", linestyle="--", linewidth=1, label=TEACHER)
    axis.set_ylim(*fitted_limits(ends))
    axis.set_xticks(positions, [str(w) for w in widths])
    axis.set_xlabel("student embedding width")
    spread = "mean ± std over seeds" if result.config.seeds > 1 else "1 seed"
    axis.set_ylabel(f"{HEADERS[measure]} ({spread})")
    axis.set_title(title)
    axis.grid(axis="y", linewidth=0.5, alpha=0.5)


def _difference_panel(axis: Axes, result: ExperimentResult, measure: str) -> None:
    """pc's mean minus the best baseline's at each width; the error bar is ± the larger of their two stds,
    the report's verdict threshold (a bar clear of 0 is "better" or "worse"); none with one seed."""
    table = comparison(result.summary(), result.config.methods, result.config.widths, MEASURES)
    widths = result.config.widths
    entries = [table[w][measure] for w in widths]
    differences = np.array([e["difference"] for e in entries])
    thresholds = np.array(
        [
            0.0 if e["pc"]["std"] is None or e["best"]["std"] is None else max(e["pc"]["std"], e["best"]["std"])
            for e in entries
        ]
    )
    positions = np.arange(len(widths))
    axis.axhline(0.0, color="black", linewidth=1)
    axis.errorbar(positions, differences, yerr=_error_bars(thresholds), fmt="o", color="black", markersize=4, capsize=3)
    for x, y, entry in zip(positions, differences, entries, strict=True):
        axis.annotate(
            f"vs {entry['best_method']}", (x, y), xytext=(6, 0), textcoords="offset points", va="center", fontsize=7
        )
    axis.set_ylim(*fitted_limits([0.0, *(differences - thresholds), *(differences + thresholds)]))
    axis.set_xticks(positions, [str(w) for w in widths])
    axis.set_xlim(-0.5, len(widths) - 0.1)  # room for the last label
    axis.set_xlabel("student embedding width")
    band = " ± larger std" if result.config.seeds > 1 else " (1 seed)"
    axis.set_ylabel(f"{OURS} − best baseline{band}")
    axis.set_title(f"{OURS} − best baseline, {HEADERS[measure]}", fontsize=10)
    axis.grid(axis="y", linewidth=0.5, alpha=0.5)


def measures_figure(result: ExperimentResult) -> Figure:
    """The main measures per width (top row), and pc minus the best baseline (bottom row, when pc and a
    baseline were trained) so that differences of a few hundredths are visible.

    Every panel's y-axis is fitted to the values it shows (with a margin), not started at 0: points
    with error bars, no bars, so no length is read against a hidden zero.
    """
    with_differences = bool(comparison(result.summary(), result.config.methods, result.config.widths, MEASURES))
    rows = 2 if with_differences else 1
    figure = Figure(figsize=(5 * len(PLOTTED_MEASURES), 3.6 * rows + 0.6))
    axes = figure.subplots(rows, len(PLOTTED_MEASURES), squeeze=False)
    for column, (measure, title) in enumerate(PLOTTED_MEASURES):
        _values_panel(axes[0][column], result, measure, title)
        if with_differences:
            _difference_panel(axes[1][column], result, measure)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.35 / figure.get_figheight()))
    return figure


def plot_measures(result: ExperimentResult, path: Path) -> None:
    """Write ``measures_figure(result)`` to ``path`` (PNG)."""
    measures_figure(result).savefig(path, dpi=110)


def _two_dimensional(points: np.ndarray) -> tuple[np.ndarray, str]:
    """(n, d) → (n, 2): the points themselves if d == 2, else their top-2 principal components."""
    if points.shape[1] == 2:
        return points, ""
    centred = points - points.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T, " (PCA)"


def class_colours(classes: int) -> np.ndarray:
    """(classes, 4) RGBA colours, one per label: tab10 up to 10 classes, tab20 up to 20, else turbo."""
    if classes <= 20:
        # Integer arguments index a listed colormap's colours directly.
        return colormaps["tab10" if classes <= 10 else "tab20"](np.arange(classes))
    return colormaps["turbo"](np.linspace(0.0, 1.0, classes))


def embeddings_figure(result: ExperimentResult) -> Figure:
    """Scatter of the held-out embeddings at the smallest width (first seed), coloured by label, with a
    legend naming the classes."""
    names = result.class_names
    colours = class_colours(len(names))
    width = min(result.config.widths)
    panels = [(TEACHER, next(w for m, w in result.embeddings if m == TEACHER))]
    panels += [(m, width) for m in (UNTRAINED, *result.config.methods)]
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    legend_rows = -(-len(names) // 10)
    figure = Figure(figsize=(3.2 * columns, 3.2 * rows + 0.3 * legend_rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.axis("off")
    for axis, (method, dim) in zip(axes.flat, panels, strict=False):
        points, how = _two_dimensional(result.embeddings[(method, dim)])
        axis.scatter(points[:, 0], points[:, 1], c=colours[result.test_labels], s=4)
        axis.set_title(f"{method}, {dim}-d{how}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("held-out embeddings, coloured by label (labels unused in distillation)", fontsize=10)
    handles = [
        Line2D([], [], marker="o", linestyle="", markersize=5, color=colour, label=name)
        for name, colour in zip(names, colours, strict=True)
    ]
    figure.legend(handles=handles, title="label", loc="lower center", ncol=min(len(names), 10), fontsize=8)
    figure.tight_layout(rect=(0, (0.3 + 0.3 * legend_rows) / figure.get_figheight(), 1, 1))
    return figure


def plot_embeddings(result: ExperimentResult, path: Path) -> None:
    """Write ``embeddings_figure(result)`` to ``path`` (PNG)."""
    embeddings_figure(result).savefig(path, dpi=110)


def write_figures(result: ExperimentResult, folder: Path) -> list[str]:
    """Write ``measures.png`` and ``embeddings.png`` into ``folder``; return their file names."""
    folder.mkdir(parents=True, exist_ok=True)
    plot_measures(result, folder / "measures.png")
    plot_embeddings(result, folder / "embeddings.png")
    return ["measures.png", "embeddings.png"]
