"""The digits demo (distill.demo): baseline losses and evaluation measures against
brute-force oracles written here, option errors, the teacher cache, and a quick end-to-end run."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer
from scipy.stats import spearmanr
from sklearn.neighbors import KNeighborsClassifier

from distill import losses as baselines
from distill.comparison import comparison
from distill.demo.__main__ import build_parser, main
from distill.demo.config import DemoConfig
from distill.demo.data import load_digits_split, load_image_folder_split
from distill.demo.evaluate import MEASURES
from distill.demo.experiment import ExperimentResult, Record, TeacherInfo, run_experiment
from distill.demo.plots import AXIS_MARGIN, embeddings_figure, measures_figure
from distill.demo.teacher_cache import load_or_train_teacher
from distill.metrics import knn_accuracy, label_recall_at_k, ndcg_at_k, neighbour_recall, spearman_coherence
from distill.objectives import METHODS
from distill.tables import Stats
from pc_kernels import available_backends

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def _dist(a: torch.Tensor, b: torch.Tensor) -> float:
    return math.sqrt(sum((float(u) - float(v)) ** 2 for u, v in zip(a, b, strict=True)))


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def _rkd_distance_oracle(s: torch.Tensor, t: torch.Tensor) -> float:
    pairs = [(i, j) for i in range(len(s)) for j in range(len(s)) if i != j]
    mu_s = sum(_dist(s[i], s[j]) for i, j in pairs) / len(pairs)
    mu_t = sum(_dist(t[i], t[j]) for i, j in pairs) / len(pairs)
    return sum(_huber(_dist(s[i], s[j]) / mu_s - _dist(t[i], t[j]) / mu_t) for i, j in pairs) / len(pairs)


def _rkd_angle_oracle(s: torch.Tensor, t: torch.Tensor, anchors: int) -> float:
    n = len(s)
    terms = [
        _huber(_cos(s[b] - s[a], s[c] - s[a]) - _cos(t[b] - t[a], t[c] - t[a]))
        for a in range(anchors)
        for b in range(n)
        for c in range(n)
        if a not in (b, c)
    ]
    return sum(terms) / len(terms)


def _pkt_oracle(s: torch.Tensor, t: torch.Tensor) -> float:
    n = len(s)

    def conditional(x: torch.Tensor, i: int) -> list[float]:
        kernel = [(1 + _cos(x[i], x[j])) / 2 if j != i else 0.0 for j in range(n)]
        return [k / sum(kernel) for k in kernel]

    total = 0.0
    for i in range(n):
        ps, pt = conditional(s, i), conditional(t, i)
        total += sum(q * math.log((q + 1e-7) / (p + 1e-7)) for p, q in zip(ps, pt, strict=True))
    return total / n


def _sp_oracle(s: torch.Tensor, t: torch.Tensor) -> float:
    n = len(s)

    def gram_rows(x: torch.Tensor) -> list[list[float]]:
        rows = [[float(x[i] @ x[j]) for j in range(n)] for i in range(n)]
        return [[g / math.sqrt(sum(v * v for v in row)) for g in row] for row in rows]

    gs, gt = gram_rows(s), gram_rows(t)
    return sum((gs[i][j] - gt[i][j]) ** 2 for i in range(n) for j in range(n)) / n**2


@pytest.fixture
def features() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (
        torch.randn(7, 3, generator=generator, dtype=torch.float64),
        torch.randn(7, 5, generator=generator, dtype=torch.float64),
    )


@pytest.mark.parametrize(
    ("loss", "oracle"),
    [
        (baselines.rkd_distance_loss, _rkd_distance_oracle),
        (baselines.rkd_angle_loss, lambda s, t: _rkd_angle_oracle(s, t, anchors=len(s))),
        (baselines.pkt_loss, _pkt_oracle),
        (baselines.similarity_preserving_loss, _sp_oracle),
    ],
    ids=["rkd-distance", "rkd-angle", "pkt", "sp"],
)
def test_baseline_matches_brute_force_and_vanishes_on_the_teacher(loss, oracle, features):
    student, teacher = features
    assert loss(student, teacher).item() == pytest.approx(oracle(student, teacher), rel=1e-9, abs=1e-12)
    # Matching features (rescaled: every relational baseline is scale-free) give a zero loss.
    assert loss(teacher * 2.0, teacher).item() == pytest.approx(0.0, abs=1e-12)
    student = student.clone().requires_grad_()
    loss(student, teacher).backward()
    assert torch.isfinite(student.grad).all()


def test_rkd_angle_caps_anchors_to_the_triplet_budget(features, monkeypatch):
    student, teacher = features
    monkeypatch.setattr(baselines, "ANGLE_TRIPLET_BUDGET", 2 * 7 * 7)
    assert baselines.rkd_angle_loss(student, teacher).item() == pytest.approx(
        _rkd_angle_oracle(student, teacher, anchors=2), rel=1e-9
    )


def test_fitnet_regresses_through_its_projector(features):
    student, teacher = features
    hint = baselines.FitNetHint(3, 5).double()
    expected = ((hint.projector(student) - teacher) ** 2).mean()
    assert hint(student, teacher).item() == pytest.approx(expected.item())
    with torch.no_grad():
        hint.projector.weight.copy_(torch.eye(5, 3, dtype=torch.float64))
        hint.projector.bias.zero_()
    padded = torch.cat([student, torch.zeros(7, 2, dtype=torch.float64)], dim=1)
    assert hint(student, padded).item() == pytest.approx(0.0, abs=1e-15)


def test_pairwise_distances_have_zero_gradient_at_duplicates():
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0], [3.0, 5.0]], dtype=torch.float64, requires_grad=True)
    d = baselines.pairwise_distances(x)
    assert torch.allclose(d, torch.cdist(x.detach(), x.detach()))
    d.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.fixture
def embeddings() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "gallery": torch.randn(40, 4, generator=generator),
        "gallery_y": torch.randint(0, 3, (40,), generator=generator),
        "queries": torch.randn(25, 4, generator=generator),
        "queries_y": torch.randint(0, 3, (25,), generator=generator),
        "teacher": torch.randn(25, 6, generator=generator),
    }


def test_knn_accuracy_matches_scikit_learn(embeddings):
    e = embeddings
    classifier = KNeighborsClassifier(n_neighbors=5, algorithm="brute")
    classifier.fit(e["gallery"].numpy(), e["gallery_y"].numpy())
    expected = classifier.score(e["queries"].numpy(), e["queries_y"].numpy())
    measured = knn_accuracy(e["gallery"], e["gallery_y"], e["queries"], e["queries_y"], "euclidean", 5)
    assert measured == pytest.approx(expected)


def _neighbours(x: torch.Tensor, i: int, k: int, metric: str) -> list[int]:
    distance = (lambda a, b: 1 - _cos(a, b)) if metric == "cosine" else _dist
    others = sorted((distance(x[i], x[j]), j) for j in range(len(x)) if j != i)
    return [j for _, j in others[:k]]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_retrieval_and_coherence_measures_match_brute_force(embeddings, metric):
    x, y, t = embeddings["queries"], embeddings["queries_y"], embeddings["teacher"]
    n = len(x)
    for k in (1, 5):
        hits = [any(y[j] == y[i] for j in _neighbours(x, i, k, metric)) for i in range(n)]
        assert label_recall_at_k(x, y, k, metric) == pytest.approx(np.mean(hits))
    for k in (1, 10):
        overlap = [len(set(_neighbours(x, i, k, metric)) & set(_neighbours(t, i, k, metric))) / k for i in range(n)]
        assert neighbour_recall(x, t, k, metric) == pytest.approx(np.mean(overlap))
    for k in (1, 10):
        gains = []
        for i in range(n):
            relevance = {j: k - r for r, j in enumerate(_neighbours(t, i, k, metric))}
            dcg = sum(relevance.get(j, 0) / math.log2(r + 2) for r, j in enumerate(_neighbours(x, i, k, metric)))
            gains.append(dcg / sum((k - r) / math.log2(r + 2) for r in range(k)))
        assert ndcg_at_k(x, t, k, metric) == pytest.approx(np.mean(gains))
        assert ndcg_at_k(t, t, k, metric) == pytest.approx(1.0)
    distance = (lambda a, b: 1 - _cos(a, b)) if metric == "cosine" else _dist
    rho = [
        spearmanr(
            [distance(x[i], x[j]) for j in range(n) if j != i], [distance(t[i], t[j]) for j in range(n) if j != i]
        ).statistic
        for i in range(n)
    ]
    assert spearman_coherence(x, t, metric) == pytest.approx(np.mean(rho))
    assert spearman_coherence(t, t, metric) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"methods": ("pc", "dino")}, "methods must be"),
        ({"batch_size": 2}, "batch_size must be an int >= 3"),
        ({"image_folder": "/no/such/folder"}, "image_folder must be an existing folder"),
        ({"widths": (2, 0)}, "widths must be"),
        ({"pc_options": {"tau": 0.0}}, "pc options 'tau=0.0' are not accepted: .*tau"),
        ({"pc_options": {"colour": "red"}}, "pc options 'colour=red' are not accepted"),
        ({"eval_metric": "manhattan"}, "eval_metric must be"),
        ({"device": "tpu"}, "device must be"),
    ],
)
def test_bad_settings_raise_naming_the_option(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(DemoConfig(), **changes).validated()


def _run_cli(argv: list[str], tmp_path) -> None:
    main([*argv, "--cache-dir", str(tmp_path), "--output", str(tmp_path / "out"), "--no-progress"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--methods", "pc,dino"], "argument --methods: must be distinct comma-separated names among pc,"),
        (["--methods", "pc,pc"], "argument --methods: must be distinct"),
        (["--methods", ","], "argument --methods: must be distinct"),
        (["--widths", "2,0"], "argument --widths: must be distinct comma-separated ints >= 1"),
        (["--widths", "2,x"], "argument --widths: must be distinct comma-separated ints >= 1"),
        (["--widths", "4,4"], "argument --widths: must be distinct comma-separated ints >= 1"),
        (["--seeds", "0"], "argument --seeds: must be an int >= 1"),
        (["--seed", "-1"], "argument --seed: must be an int >= 0"),
        (["--epochs", "0"], "argument --epochs: must be an int >= 1"),
        (["--epochs", "2.5"], "argument --epochs: must be an int >= 1"),
        (["--teacher-epochs", "-3"], "argument --teacher-epochs: must be an int >= 1"),
        (["--batch-size", "2"], "argument --batch-size: must be an int >= 3"),
        (["--lr", "0"], "argument --lr: must be a finite number > 0"),
        (["--lr", "inf"], "argument --lr: must be a finite number > 0"),
        (["--pc-options", "tau=-0.1"], "argument --pc-options: pc options 'tau=-0.1' are not accepted"),
        (["--pc-options", "tau"], "argument --pc-options: pc options must be distinct key=value items"),
        (["--pc-options", "tau=1,tau=2"], "argument --pc-options: pc options must be distinct key=value items"),
        (["--image-size", "0"], "argument --image-size: must be an int >= 1"),
        (["--threads", "-1"], "argument --threads: must be an int >= 0"),
        (["--device", "tpu"], "argument --device: device must be 'cpu', 'cuda' or 'cuda:<index>'"),
        (["--image-folder", "/no/such/folder"], "argument --image-folder: must be an existing folder"),
        (["--eval-metric", "manhattan"], "argument --eval-metric: invalid choice: 'manhattan'"),
        (["--batch-size", "5000"], "batch_size must be <= the 1347 training samples; got 5000"),
    ],
)
def test_command_line_rejects_bad_options(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        _run_cli(argv, tmp_path)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error
    assert repr(argv[1]) in error or argv[1] in error  # the value received


def test_command_line_rejects_triton_where_it_cannot_run(capsys, tmp_path, monkeypatch):
    # On a CPU device triton runs only under its interpreter, which the tests switch on (conftest.py).
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "triton" not in available_backends("cpu")
    with pytest.raises(SystemExit) as exit_info:
        _run_cli(["--pc-options", "backend=triton", "--device", "cpu"], tmp_path)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "argument --pc-options: pc options 'backend=triton' are not accepted" in error
    with pytest.raises(ValueError, match="pc options 'backend=triton' are not accepted"):
        DemoConfig(pc_options={"backend": "triton"}).validated()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_device_without_cuda_is_a_clear_error(capsys, tmp_path):
    with pytest.raises(ValueError, match="CUDA is not available"):
        DemoConfig(device="cuda").validated()
    with pytest.raises(SystemExit) as exit_info:
        _run_cli(["--device", "cuda"], tmp_path)
    assert exit_info.value.code == 2
    assert "argument --device: device 'cuda' was asked for but CUDA is not available here" in capsys.readouterr().err


def _help_entries(text: str) -> dict[str, str]:
    """option → its help text, from ``--help`` output (entries start with "  -"; help follows the
    option after two or more spaces, or on the indented lines below it)."""
    entries: dict[str, str] = {}
    lines = text.split("options:\n", 1)[1].splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("  -"):
            continue
        invocation, _, help_start = line.strip().partition("  ")
        rest = []
        for following in lines[i + 1 :]:
            if following.startswith("  -") or not following.strip():
                break
            rest.append(following.strip())
        entries[invocation.split()[0].rstrip(",")] = " ".join([help_start.strip(), *rest]).strip()
    return entries


def test_help_gives_every_option_help_and_each_default_once(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    entries = _help_entries(capsys.readouterr().out)
    parser = build_parser()
    options = {a.option_strings[0]: a for a in parser._actions}
    assert set(entries) == set(options)
    for option, text in entries.items():
        default = options[option].default
        # (a long default may be wrapped after a hyphen)
        stated = [value.replace("- ", "-") for value in re.findall(r"\(default: ([^)]*)\)", text)]
        described = re.sub(r"\(default: [^)]*\)", "", text).strip()
        assert described, f"{option} has no help text"
        assert len(re.findall(r"\bdefault\b", text, flags=re.IGNORECASE)) <= 1, f"{option}: {text}"
        if default is not None and default is not argparse.SUPPRESS and not isinstance(default, bool):
            assert stated == [str(default)], f"{option}: {text}"


def test_image_folder_errors_without_torchvision(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match="needs torchvision"):
        load_image_folder_split(tmp_path, 8)
    with pytest.raises(ValueError, match="existing folder"):
        load_image_folder_split(tmp_path / "missing", 8)


def test_digits_split_is_fixed_and_stratified():
    first, second = load_digits_split(), load_digits_split()
    assert first.fingerprint() == second.fingerprint()
    assert (len(first.train_y), len(first.test_y)) == (1347, 450)
    assert first.class_names == tuple("0123456789")
    per_class = torch.bincount(torch.cat([first.train_y, first.test_y]))
    assert (torch.bincount(first.test_y) - 0.25 * per_class).abs().max() <= 1


@pytest.mark.parametrize(
    ("pc", "verdict"),
    [((0.80, 0.01), "better"), ((0.71, 0.02), "within 1 std"), ((0.695, 0.005), "within 1 std"), ((0.6, 0.0), "worse")],
)
def test_comparison_against_the_best_baseline(pc, verdict):
    def stats(mean: float, std: float) -> dict[str, Stats]:
        return {m: {"mean": mean, "std": std, "seeds": 3} for m in MEASURES}

    summary = {"pc": {2: stats(*pc)}, "sp": {2: stats(0.7, 0.01)}, "pkt": {2: stats(0.5, 0.3)}}
    entry = comparison(summary, ("pc", "pkt", "sp"), (2,), MEASURES)[2]["spearman"]
    assert (entry["best_method"], entry["verdict"]) == ("sp", verdict)
    assert entry["difference"] == pytest.approx(pc[0] - 0.7)
    assert comparison(summary, ("pkt", "sp"), (2,), MEASURES) == {}


def test_one_seed_gets_no_verdict():
    # With one seed the spread is unknown: even a large difference is no evidence either way.
    def stats(mean: float) -> dict[str, Stats]:
        return {m: {"mean": mean, "std": None, "seeds": 1} for m in MEASURES}

    summary = {"pc": {2: stats(0.9), 8: stats(0.1)}, "sp": {2: stats(0.5), 8: stats(0.5)}}
    table = comparison(summary, ("pc", "sp"), (2, 8), MEASURES)
    assert {entry["verdict"] for by_measure in table.values() for entry in by_measure.values()} == {"n/a (1 seed)"}
    assert table[2]["knn_accuracy"]["difference"] == pytest.approx(0.4)


VERDICT = r"(better|worse|within 1 std|n/a \(1 seed\))"


def _markdown_verdicts(text: str) -> list[str]:
    """The verdict cells ("<verdict> (+0.012 vs rkd-angle)") of report.md's comparison table."""
    return re.findall(VERDICT + r" \([+-]\d", text)


def _printed_verdicts(text: str) -> list[str]:
    """The verdict column of the printed comparison (rows "<width> <measure> <difference> <baseline> <verdict>")."""
    return re.findall(r"^ *\d+ .* [+-]\d\.\d{3} +\S+ +" + VERDICT + "$", text, flags=re.MULTILINE)


@pytest.fixture
def synthetic_result() -> ExperimentResult:
    """A finished run made up here (3 seeds, widths 2 and 8): pc 0.01 to 0.03 above rkd-distance, far above
    sp and the untrained student, below the teacher."""
    config = DemoConfig(methods=("pc", "rkd-distance", "sp"), widths=(2, 8), seeds=3).validated()
    base = {"untrained": 0.30, "pc": 0.84, "rkd-distance": 0.82, "sp": 0.60}
    records = [Record("teacher", 64, 0, dict.fromkeys(MEASURES, 0.97))]
    for width, seed in [(w, s) for w in config.widths for s in range(config.seeds)]:
        for method, value in base.items():
            shift = 0.01 * (width == 8) * (method == "pc") + 0.004 * seed * (method != "rkd-distance")
            metrics = {m: value + shift + 0.001 * i for i, m in enumerate(MEASURES)}
            records.append(Record(method, width, seed, metrics, seconds_per_step=1e-3))
    generator = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 6)
    embeddings = {(m, w): generator.normal(size=(60, w)) for m in base for w in config.widths}
    embeddings[("teacher", 64)] = generator.normal(size=(60, 64))
    teacher: TeacherInfo = {
        "cache_file": "teacher.pt",
        "loaded_from_cache": True,
        "parameters": 1,
        "feature_dim": 64,
        "student_parameters": dict.fromkeys(config.widths, 1),
    }
    data = {"name": "synthetic", "train": 0, "test": 60, "features": 64}
    names = tuple(f"class {c}" for c in range(10))
    return ExperimentResult(config, "synthetic", 0.0, {}, data, teacher, records, embeddings, labels, names)


def _in_fitted_limits(axis, values: list[float]) -> None:
    """The axis's y-range holds every value and is at most the values' range plus the margins."""
    low, high = axis.get_ylim()
    assert low <= min(values) and high >= max(values)
    assert high - low <= (max(values) - min(values)) * (1 + 2 * AXIS_MARGIN) + 1e-12


def test_measures_figure_fits_each_axis_to_its_points(synthetic_result):
    figure = measures_figure(synthetic_result)
    summary = synthetic_result.summary()
    table = comparison(summary, ("pc", "rkd-distance", "sp"), (2, 8), MEASURES)
    measures = ("knn_accuracy", "spearman", "neighbour_overlap")
    values_axes, difference_axes = figure.axes[:3], figure.axes[3:]
    assert len(difference_axes) == 3
    for axis in figure.axes:
        # Points with error bars: no bar is read as a length from a zero the axis does not show.
        assert not any(isinstance(c, BarContainer) for c in axis.containers)
        assert axis.get_ylabel()
    for axis, measure in zip(values_axes, measures, strict=True):
        ends = [0.97 + 0.001 * MEASURES.index(measure)]
        for method in ("untrained", "pc", "rkd-distance", "sp"):
            for stats in (summary[method][w][measure] for w in (2, 8)):
                std = stats["std"] or 0.0
                ends += [stats["mean"] - std, stats["mean"] + std]
        _in_fitted_limits(axis, ends)
        assert axis.get_ylim()[0] > 0.2  # not from 0: the untrained student is the lowest point, at 0.3
    for axis, measure in zip(difference_axes, measures, strict=True):
        entries = [table[w][measure] for w in (2, 8)]
        assert [e["difference"] for e in entries] == pytest.approx([0.024, 0.034])
        ends = [0.0]
        for e in entries:
            threshold = max(e["pc"]["std"], e["best"]["std"])
            ends += [e["difference"] - threshold, e["difference"] + threshold]
        _in_fitted_limits(axis, ends)
        low, high = axis.get_ylim()
        assert high - low < 0.05  # differences of 0.01 are a fifth of the panel or more


def test_embeddings_figure_names_the_colour_of_every_class(synthetic_result):
    figure = embeddings_figure(synthetic_result)
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == [f"class {c}" for c in range(10)]
    legend_colours = np.array([to_rgba(handle.get_color()) for handle in legend.legend_handles])
    assert len({tuple(c) for c in legend_colours}) == 10
    panels = [axis for axis in figure.axes if axis.collections]
    assert len(panels) == 5  # the teacher, the untrained student and the three methods
    for axis in panels:
        (points,) = axis.collections
        # Each point has its class's legend colour.
        assert np.array_equal(points.get_facecolors(), legend_colours[synthetic_result.test_labels])


def test_teacher_cache_reuses_the_trained_weights(tmp_path):
    split = load_digits_split()
    settings = {"epochs": 1, "seed": 3, "device": torch.device("cpu"), "cache_dir": tmp_path, "progress": False}
    trained, path, cached = load_or_train_teacher(split, **settings)
    loaded, same_path, reused = load_or_train_teacher(split, **settings)
    assert (cached, reused, same_path) == (False, True, path)
    for a, b in zip(trained.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    _, other_path, _ = load_or_train_teacher(split, **{**settings, "seed": 4})
    assert other_path != path


def test_same_seed_gives_identical_metrics(tmp_path):
    config = DemoConfig(
        methods=("pc", "fitnet"),
        widths=(2,),
        seeds=1,
        student_epochs=1,
        teacher_epochs=1,
        batch_size=64,
        cache_dir=str(tmp_path),
        progress=False,
        threads=1,
    )
    first, second = run_experiment(config, "test"), run_experiment(config, "test")
    assert [r.metrics for r in first.records] == [r.metrics for r in second.records]


def test_quick_run_distils_and_writes_the_report(tmp_path, capsys):
    output = tmp_path / "report"
    main(
        [
            "--quick",
            "--seed",
            "0",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output",
            str(output),
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    printed = capsys.readouterr().out
    assert "report written to" in printed
    report = json.loads((output / "report.json").read_text())
    markdown = (output / "report.md").read_text()
    # --quick trains one seed per student: no spread is known, so no difference gets a verdict.
    cells = len(report["config"]["widths"]) * len(MEASURES)
    assert [c["verdict"] for w in report["comparison"].values() for c in w.values()] == ["n/a (1 seed)"] * cells
    assert _printed_verdicts(printed) == ["n/a (1 seed)"] * cells
    assert _markdown_verdicts(markdown) == ["n/a (1 seed)"] * cells
    results = markdown.split("## Results")[1].split("## Perception coherence")[0]
    assert "| pc |" in results and "±" not in results
    assert report["summary"]["pc"]["2"]["spearman"]["std"] is None
    assert report["summary"]["pc"]["2"]["spearman"]["seeds"] == 1
    for name in ("report.md", "measures.png", "embeddings.png"):
        assert (output / name).stat().st_size > 0
    summary = report["summary"]
    assert set(summary) == {"teacher", "untrained", *METHODS}
    for by_width in summary.values():
        for stats in by_width.values():
            assert all(math.isfinite(s["mean"]) for s in stats.values())
    for width in ("2", "8"):
        pc, untrained = summary["pc"][width], summary["untrained"][width]
        assert pc["knn_accuracy"]["mean"] >= untrained["knn_accuracy"]["mean"] + 0.15
        assert pc["spearman"]["mean"] >= untrained["spearman"]["mean"] + 0.3
    assert set(report["records"][0]["metrics"]) == set(MEASURES)
    # The report names its run: the command, the machine, the commit.
    assert report["command"].startswith("python -m distill.demo --quick")
    assert report["environment"]["hardware"] and report["environment"]["commit"]
    assert f"`{report['environment']['commit']}`" in markdown and report["command"] in markdown
