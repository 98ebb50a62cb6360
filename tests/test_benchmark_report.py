"""The benchmark harness (benchmarks/) cannot rot: its quick mode runs end to end on CPU.

Checks structure only (every provider × mode × n has a number or an explicit OOM/skip marker,
our providers' rows carry their accuracy, plots and table are written, the README block is
generated from stored rows, results files written before the accuracy columns still load); never speed.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# benchmarks/ is a top-level folder of the repository, not part of the installed package.
sys.path.insert(0, str(REPO))

from benchmarks.plots import PLOT_FILES, draw_plots  # noqa: E402
from benchmarks.point import Measurement, Point, Settings, measure_point  # noqa: E402
from benchmarks.providers import OURS, PROVIDERS  # noqa: E402
from benchmarks.readme_table import END_MARKER, START_MARKER, benchmark_block, replace_block  # noqa: E402
from benchmarks.records import (  # noqa: E402
    ADDED_FIELDS,
    FIELDS,
    STATUSES,
    append_rows,
    device_name,
    device_tag,
    load_rows,
)
from benchmarks.report import main as report_main  # noqa: E402
from benchmarks.runner import (  # noqa: E402
    Series,
    SweepConfig,
    measure_in_worker,
    predicted_measurement,
    record_outcome,
    to_row,
)
from benchmarks.throughput import MODES, sigmoid_evaluations  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUICK_SIZES = (48,)


def _config(**changes) -> SweepConfig:
    fields = dict(
        device="cpu",
        sizes=QUICK_SIZES,
        dims=((16, 16),),
        dtypes=("float32",),
        providers=PROVIDERS,
        modes=MODES,
        threads=1,
        memory_limit_bytes=2**30,
        settings=Settings(time_limit_s=1.0, repeat_budget_s=0.1, min_repeats=3, max_repeats=5),
        fresh_compile_cache=False,
    )
    fields.update(changes)
    return SweepConfig(**fields)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.report", "--device", "cpu", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (folder,) = [path for path in out.iterdir() if path.is_dir()]
    return folder, completed.stdout


def test_quick_run_has_a_number_or_marker_for_every_point(quick_run):
    folder, _ = quick_run
    rows = load_rows(folder / "results.csv")
    assert sorted((r["provider"], r["mode"], r["n"]) for r in rows) == sorted(
        (provider, mode, n) for provider in PROVIDERS for mode in MODES for n in QUICK_SIZES
    )
    for row in rows:
        assert row["status"] in STATUSES and row["status"] != "error", row
        assert row["run_kind"] == "quick" and row["device"] == "cpu" and row["commit"] and row["date"]
        if row["status"] == "ok":
            assert 0 < row["p20_s"] <= row["median_s"] <= row["p80_s"], row
            assert row["samples"] >= 3 and row["peak_bytes"] >= 0 and row["first_call_s"] > 0
            if row["provider"] == "torch_binned":
                # The binned algorithm does not evaluate the dense sigmoids one by one.
                assert row["sigmoid_evals"] is None and row["evals_per_s"] is None
            else:
                assert row["sigmoid_evals"] == sigmoid_evaluations(row["n"], row["mode"])
                assert row["evals_per_s"] == pytest.approx(row["sigmoid_evals"] / row["median_s"])
        else:
            assert str(row["note"]).startswith(("OOM", "skipped (")), row
        if row["status"] == "ok" and row["provider"] in OURS:
            # Accuracy against the dense float64 torch backend on min(n, 256) = 48 reference rows.
            assert row["accuracy_rows"] == 48 and not row["note"], row
            assert 0 <= row["loss_rel_error"] < 1e-4 and 1 - 1e-6 < row["grad_cosine"] <= 1 + 1e-12, row
        else:
            assert row["accuracy_rows"] is row["loss_rel_error"] is row["grad_cosine"] is None, row
    triton = [r for r in rows if r["provider"] in ("triton", "triton_binned")]
    assert len(triton) == 2 * len(MODES)
    assert all(r["status"] == "skipped" and "CUDA" in r["note"] for r in triton)
    assert {r["provider"] for r in rows if r["status"] == "ok"} == {
        "torch",
        "torch_binned",
        "reference",
        "reference_compiled",
    }


def test_quick_run_writes_plots_and_prints_the_table(quick_run):
    folder, stdout = quick_run
    for name in ("time_vs_n.png", "memory_vs_n.png", "speedup.png"):
        assert (folder / name).read_bytes().startswith(PNG_MAGIC)
    table = (folder / "table.md").read_text(encoding="utf-8")
    assert table.strip() in stdout
    assert (
        "| mode | n | torch | torch_binned | reference | reference_compiled | ours (dense) vs best alternative"
        " | binned vs dense | accuracy: loss rel. err · grad cos |"
    ) in table
    assert "- not run: triton — skipped (" in table and "- not run: triton_binned — skipped (" in table
    assert "- largest n that ran, fwd_bwd: torch 48 (largest swept), torch_binned 48 (largest swept)" in table
    assert "- accuracy: each of our providers (in the point's dtype) vs the dense torch backend" in table
    assert "first 48 reference rows (n if smaller)" in table
    line = next(line for line in table.splitlines() if line.startswith("| fwd_bwd | 48 |"))
    assert "× (torch_binned vs torch) |" in line and "; torch_binned " in line and " · 1" in line


def test_accuracy_is_measured_after_the_timing_on_the_first_rows_asked_for():
    point = Point("torch_binned", "fwd", 40, 8, 8, "float32", "cpu")
    measured = measure_point(point, Settings(1.0, 0.01, 3, 3, accuracy_rows=8))
    assert measured.status == "ok" and measured.accuracy_rows == 8, measured
    assert measured.loss_rel_error < 1e-4 and measured.grad_cosine > 1 - 1e-6
    unmeasured = measure_point(point, Settings(1.0, 0.01, 3, 3, accuracy_rows=0))
    assert unmeasured.status == "ok" and unmeasured.loss_rel_error is unmeasured.accuracy_rows is None
    reference = Point("reference", "fwd", 40, 8, 8, "float32", "cpu")
    reference = measure_point(reference, Settings(1.0, 0.01, 3, 3))
    assert reference.status == "ok" and reference.loss_rel_error is None


def test_unavailable_oom_and_too_slow_points_are_predicted():
    config = _config(memory_limit_bytes=10 * 2**20, settings=Settings(2.0, 0.1, 3, 5))
    point = Point("reference", "fwd", 128, 16, 16, "float32", "cpu")
    assert predicted_measurement(point, config, Series()).note.startswith("OOM (predicted")
    triton = Point("triton", "fwd", 32, 16, 16, "float32", "cpu")
    assert predicted_measurement(triton, config, Series()).status == "skipped"

    series = Series()
    torch_point = Point("torch", "fwd", 64, 16, 16, "float32", "cpu")
    assert predicted_measurement(torch_point, config, series) is None
    record_outcome(Measurement("ok", median_s=1.0), torch_point, series)
    bigger = Point("torch", "fwd", 128, 16, 16, "float32", "cpu")
    slow = predicted_measurement(bigger, config, series)
    assert slow.status == "skipped" and slow.note.startswith("skipped (too slow: extrapolated 8 s")

    # The binned providers' time is extrapolated as n² instead of n³.
    series = Series()
    binned = Point("torch_binned", "fwd", 64, 16, 16, "float32", "cpu")
    record_outcome(Measurement("ok", median_s=1.0), binned, series)
    slow = predicted_measurement(Point("torch_binned", "fwd", 128, 16, 16, "float32", "cpu"), config, series)
    assert slow.status == "skipped" and slow.note.startswith("skipped (too slow: extrapolated 4 s")

    series = Series()
    record_outcome(Measurement("oom", "OOM (stopped)"), torch_point, series)
    assert predicted_measurement(bigger, config, series).note == "OOM (already at n=64)"


def test_worker_above_the_memory_limit_is_stopped_and_recorded_as_oom():
    point = Point("reference", "fwd_bwd", 96, 16, 16, "float32", "cpu")
    measurement = measure_in_worker(point, _config(memory_limit_bytes=2**20))
    assert measurement.status == "oom" and "stopped" in measurement.note


def _rows(device: str, device_name: str, run_kind: str, run_id: str) -> list[dict]:
    environment = dict(
        run_id=run_id,
        run_kind=run_kind,
        date=f"date-{run_id}",
        commit="abc",
        device=device,
        device_name=device_name,
        torch_version="t",
        triton_version="tr",
        threads=2,
    )
    outcomes = {
        "triton": Measurement("skipped", "skipped (no GPU)"),
        "triton_binned": Measurement("skipped", "skipped (no GPU)"),
        "torch": Measurement(
            "ok", median_s=0.01, p20_s=0.009, p80_s=0.011, samples=3, first_call_s=0.02, peak_bytes=2**20
        ),
        "torch_binned": Measurement(
            "ok",
            median_s=0.002,
            p20_s=0.002,
            p80_s=0.003,
            samples=3,
            first_call_s=0.01,
            peak_bytes=2**21,
            accuracy_rows=16,
            loss_rel_error=3.1e-7,
            grad_cosine=1 - 2e-11,
        ),
        "reference": Measurement(
            "ok", median_s=0.05, p20_s=0.04, p80_s=0.06, samples=3, first_call_s=0.05, peak_bytes=2**24
        ),
        "reference_compiled": Measurement("oom", "OOM (predicted 9 GiB > limit 8 GiB)"),
    }
    return [
        to_row(environment, Point(provider, mode, n, 8, 8, "float32", device), outcome)
        for provider, outcome in outcomes.items()
        for mode in MODES
        for n in (16, 32)
    ]


def test_readme_block_is_generated_from_the_latest_full_run_per_device(tmp_path):
    results = tmp_path / "results"
    append_rows(results / "cpu-x" / "results.csv", _rows("cpu", "CPU X", "full", "1"))
    append_rows(results / "cpu-x" / "results.csv", _rows("cpu", "CPU X", "full", "2"))
    append_rows(results / "cpu-x" / "results.csv", _rows("cpu", "CPU X", "quick", "3"))
    assert set(load_rows(results / "cpu-x" / "results.csv")[0]) == set(FIELDS)

    block = benchmark_block(results, tmp_path)
    assert "CPU X" in block and "date-2" in block and "date-1" not in block and "date-3" not in block
    assert "5× (torch)" in block and "OOM (predicted 9 GiB > limit 8 GiB)" in block
    assert "| 5× (torch_binned vs torch) | torch_binned 3.1e-07 · 1−2e-11 |" in block
    assert "(results/cpu-x/time_vs_n.png)" in block and "no full GPU run is stored yet" in block
    assert (results / "cpu-x" / "speedup.png").read_bytes().startswith(PNG_MAGIC)

    nested = results / "gpu-check" / "report" / "cuda-y" / "results.csv"
    append_rows(nested, _rows("cuda", "GPU Y", "full", "4"))
    baselines = [
        row for row in _rows("cuda", "GPU Y", "full", "5") if row["provider"].startswith("reference")
    ]
    append_rows(nested, baselines)
    block = benchmark_block(results, tmp_path)
    assert block.index("CPU X") < block.index("GPU Y") and "no full" not in block
    assert "date-4 / date-5" in block and "% of floor" in block
    assert "(results/cuda-y/speedup.png)" in block and (results / "cuda-y" / "table.md").exists()

    readme = f"intro\n{START_MARKER}\nstale\n{END_MARKER}\noutro\n"
    rewritten = replace_block(readme, block)
    assert rewritten.startswith(f"intro\n{START_MARKER}\n") and rewritten.endswith(f"{END_MARKER}\noutro\n")
    assert "stale" not in rewritten
    with pytest.raises(ValueError, match="benchmarks:start"):
        replace_block("no markers", block)


def test_plots_survive_points_whose_peak_memory_is_zero(tmp_path):
    # Tiny points can show no resident-memory growth at all: log axes must not fail on them.
    rows = [
        {**row, "peak_bytes": 0} if row["status"] == "ok" else row for row in _rows("cpu", "CPU X", "full", "1")
    ]
    paths = draw_plots(rows, tmp_path)
    assert [p.name for p in paths] == list(PLOT_FILES)
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in paths)


def test_results_written_before_the_accuracy_columns_still_load_and_are_kept(tmp_path):
    path = tmp_path / "cpu-x" / "results.csv"
    path.parent.mkdir()
    old_fields = [field for field in FIELDS if field not in ADDED_FIELDS]
    old_rows = [row for row in _rows("cpu", "CPU X", "full", "1") if row["provider"] != "torch_binned"]
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=old_fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in old_rows)

    loaded = load_rows(path)
    assert len(loaded) == len(old_rows) and all(set(row) == set(FIELDS) for row in loaded)
    assert all(row[field] is None for row in loaded for field in ADDED_FIELDS)
    assert [row["median_s"] for row in loaded] == [row["median_s"] for row in old_rows]
    assert "| torch | reference |" in benchmark_block(tmp_path, tmp_path)

    new_rows = [row for row in _rows("cpu", "CPU X", "full", "2") if row["provider"] == "torch_binned"]
    append_rows(path, new_rows)
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(FIELDS)
    loaded = load_rows(path)
    assert [row["run_id"] for row in loaded] == ["1"] * len(old_rows) + ["2"] * len(new_rows)
    assert loaded[-1]["loss_rel_error"] == pytest.approx(3.1e-7) and loaded[0]["loss_rel_error"] is None
    block = benchmark_block(tmp_path, tmp_path)
    assert "5× (torch_binned vs torch)" in block and "| torch | torch_binned | reference |" in block

    with path.open("w", encoding="utf-8") as out:
        out.write("run_id,unknown\n")
    with pytest.raises(ValueError, match="results columns"):
        load_rows(path)


def test_a_full_run_of_one_provider_adds_to_the_stored_table_instead_of_replacing_it(tmp_path, capsys):
    name = device_name("cpu")
    folder = tmp_path / device_tag("cpu", name)
    append_rows(folder / "results.csv", _rows("cpu", name, "full", "1"))
    argv = ["--device", "cpu", "--providers", "torch_binned", "--modes", "fwd", "--sizes", "64"]
    argv += ["--dims", "8", "--threads", "1", "--max-repeats", "3", "--accuracy-rows", "4", "--out", str(tmp_path)]
    assert report_main(argv) == 0
    printed = capsys.readouterr().out
    assert "| fwd | 64 | " in printed and "| fwd | 32 |" not in printed  # this run's table
    table = (folder / "table.md").read_text(encoding="utf-8")  # every point's latest full measurement
    assert "| fwd | 32 | " in table and "| fwd | 64 | " in table and "first 4 / 16 reference rows" in table
    assert "| 5× (torch_binned vs torch) |" in table and "(4 rows)" in table and "(16 rows)" in table
    assert "- largest n that ran, fwd: torch 32 (not swept above), torch_binned 64 (largest swept)" in table
