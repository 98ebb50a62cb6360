"""The benchmark harness (benchmarks/) cannot rot: a quick CPU sweep end to end, the OOM / too-slow cells,
the README block (CPU and GPU never mixed), dirty-tree marking, the GPU check's dry run, the scaling fit,
and no process-wide setting left changed by the harness. Structure only, never speed."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of the repository, not part of the installed package

from benchmarks import harness, reports  # noqa: E402
from benchmarks.__main__ import main  # noqa: E402
from benchmarks.harness import FIELDS, Limits, Measurement, Point  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
LIMITS = Limits(2.0, 0.05, 3, 3, memory_limit_bytes=2**30, threads=1, fresh_compile_cache=False)


def _run(*command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_quick_sweep_writes_a_cell_per_point_the_table_and_the_plots(tmp_path):
    providers = "torch,torch_binned,reference,triton"
    argv = [
        "sweep",
        "--device",
        "cpu",
        "--quick",
        "--providers",
        providers,
        "--modes",
        "fwd_bwd",
        "--out",
        str(tmp_path),
    ]
    done = _run(sys.executable, "-m", "benchmarks", *argv)
    (folder,) = tmp_path.iterdir()
    with (folder / "results.csv").open(newline="") as source:
        assert tuple(next(csv.reader(source))) == FIELDS
    rows = harness.load_rows(folder / "results.csv")
    assert sorted((r["provider"], r["n"]) for r in rows) == sorted(
        (p, n) for p in providers.split(",") for n in (16, 32)
    )
    for row in rows:
        assert row["run_kind"] == "quick" and row["device"] == "cpu" and row["threads"] == 1 and row["commit"]
        if row["provider"] == "triton":
            assert row["status"] == "skipped" and "CUDA only" in row["note"], row
            continue
        assert row["status"] == "ok", row
        assert 0 < row["p20_s"] <= row["median_s"] <= row["p80_s"] and row["samples"] >= 3 and row["peak_bytes"] >= 0
        assert row["compile_s"] == pytest.approx(max(row["first_call_s"] - row["median_s"], 0))
        if row["provider"] == "torch_binned":  # the binned algorithm evaluates no dense sigmoids
            assert row["sigmoid_evals"] is None and row["evals_per_s"] is None
        else:
            assert row["sigmoid_evals"] == 3 * row["n"] * (row["n"] - 1) * (row["n"] - 2)
        if row["provider"] == "reference":
            assert row["loss_rel_error"] is None
        else:  # ours, against the dense float64 torch backend on min(n, 256) reference rows
            assert row["accuracy_rows"] == row["n"] and row["loss_rel_error"] < 1e-4 and row["grad_cosine"] > 1 - 1e-6
    table = (folder / "table.md").read_text()
    assert table.strip() in done.stdout and "| fwd_bwd | 32 | " in table and "× (torch_binned vs torch)" in table
    assert "| mode | n | torch | torch_binned | reference | ours (dense) vs best alternative |" in table
    assert "- not run: triton — skipped (triton runs on CUDA only" in table
    assert all((folder / name).read_bytes().startswith(PNG) for name in reports.PLOTS)


def _fake(outcomes: dict[int, Measurement], calls: list[int]):
    def measure(point: Point, limits: Limits) -> Measurement:
        calls.append(point.n)
        return outcomes[point.n]

    return measure


def test_oom_and_too_slow_cells_are_predicted_and_stop_the_series():
    ok = Measurement("ok", median_s=1.0, p20_s=1.0, p80_s=1.0, samples=3, first_call_s=1.0, peak_bytes=0)
    limits, env, calls = replace(LIMITS, memory_limit_bytes=10 * 2**20), {}, []

    def series(provider: str, sizes: tuple[int, ...], outcomes: dict) -> list[str]:
        points = [Point(provider, "fwd_bwd", n, 8, 8, "float32", "cpu") for n in sizes]
        return [r["note"] for r in harness.run_series(points, limits, env, lambda row: None, _fake(outcomes, calls))]

    # The eager reference's 6·n³·4 bytes: 6.3 MB at n = 64 fits 10 MiB, 50 MB at n = 128 does not.
    assert series("reference", (64, 128), {64: ok}) == ["", "OOM (predicted 0.0469 GiB > limit 0.00977 GiB)"]
    # Too slow, extrapolated from the last measured n as n³ (dense) and n² (binned), beyond the 2 s limit.
    assert series("torch", (64, 128, 256), {64: ok})[1:] == [
        "skipped (too slow: extrapolated 8 s per call > limit 2 s)",
        "skipped (too slow: extrapolated 64 s per call > limit 2 s)",
    ]
    assert series("torch_binned", (64, 128), {64: ok})[1] == "skipped (too slow: extrapolated 4 s per call > limit 2 s)"
    # A point that ran out of memory (or was too slow) stops the larger n of its series.
    assert series("torch", (64, 128), {64: Measurement("oom", "OOM (stopped)")}) == [
        "OOM (stopped)",
        "OOM (already at n=64)",
    ]
    assert series("triton", (64,), {}) == [
        "skipped (triton runs on CUDA only; the CPU interpreter is never benchmarked)"
    ]
    assert calls == [64, 64, 64, 64]


def test_harness_calls_leave_environment_threads_rng_and_dynamo_as_they_were(tmp_path):
    frames = torch._dynamo.utils.counters["frames"]["total"]  # (importing torch._dynamo sets an environment variable)
    before = (dict(os.environ), torch.get_num_threads(), torch.random.get_rng_state())
    limits = replace(LIMITS, threads=2, accuracy_rows=0)
    step = Point("torch_compiled_step", "fwd_bwd", 16, 8, 8, "float32", "cpu")
    (row,) = harness.run_series([step], limits, {}, lambda row: None)  # a worker process compiles it
    assert row["status"] == "ok" and row["first_call_s"] > row["median_s"] and row["compile_s"] > 0, row
    here = harness.measure_point(Point("torch", "fwd", 16, 8, 8, "float32", "cpu"), LIMITS)  # in this process
    assert here.status == "ok" and here.loss_rel_error < 1e-6
    assert main(["accuracy", "--n", "12", "--dim", "3", "--taus", "0.5", "--out", str(tmp_path / "a.md")]) == 0
    assert (tmp_path / "a.md").read_text().count("| gaussian | 0.5 | float") == 2
    assert (dict(os.environ), torch.get_num_threads()) == before[:2]
    assert torch.equal(torch.random.get_rng_state(), before[2])
    assert torch._dynamo.utils.counters["frames"]["total"] == frames  # nothing was compiled in this process


def _rows(device: str, name: str, run_id: str, commit: str = "abc", kind: str = "full") -> list[dict]:
    run = dict(run_id=run_id, run_kind=kind, date=f"date-{run_id}", commit=commit, device=device, device_name=name)
    env = run | dict(torch_version="t", triton_version="tr", threads=2)

    def ran(median: float, **accuracy: float) -> Measurement:
        return Measurement("ok", "", median, 0.9 * median, 1.1 * median, 3, 2.0, 2**20, **accuracy)

    outcomes = {
        "torch": ran(0.01, accuracy_rows=16, loss_rel_error=3e-8, grad_cosine=1.0),
        "torch_binned": ran(0.002, accuracy_rows=16, loss_rel_error=3.1e-7, grad_cosine=1 - 2e-11),
        "reference": ran(0.05),
        "reference_compiled": Measurement("oom", "OOM (predicted 9 GiB > limit 8 GiB)"),
        "triton": Measurement("skipped", "skipped (no GPU)"),
    }
    points = [(p, m, n) for p in outcomes for m in harness.MODES for n in (768, 1024)]
    return [harness.to_row(env, Point(p, m, n, 8, 8, "float32", device), outcomes[p]) for p, m, n in points]


def test_readme_block_keeps_cpu_and_gpu_apart_and_names_each_run(tmp_path):
    results = tmp_path / "results"
    harness.append_rows(results / "cpu-x" / "results.csv", _rows("cpu", "CPU X", "1") + _rows("cpu", "CPU X", "2"))
    harness.append_rows(results / "cpu-x" / "results.csv", _rows("cpu", "CPU X", "3", kind="quick"))
    harness.append_rows(results / "gpu-check" / "cuda-y" / "results.csv", _rows("cuda", "GPU Y", "4", "def-dirty"))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{reports.START_MARKER}\nstale\n{reports.END_MARKER}\noutro\n")
    assert main(["readme", "--file", str(readme), "--results", str(results)]) == 0
    text = readme.read_text()
    assert text.startswith(f"intro\n{reports.START_MARKER}\n") and text.endswith(f"{reports.END_MARKER}\noutro\n")
    cpu, gpu = text.split("### GPU: GPU Y")
    assert "stale" not in text and "### CPU: CPU X" in cpu and "date-2" in cpu and "GPU Y" not in cpu
    assert "date-1" not in text and "date-3" not in text  # latest full run only; quick runs never
    assert "CPU X" not in gpu and "commit def-dirty (uncommitted changes)" in gpu and "% of floor" in gpu
    assert "| 5× (torch) | 5× (torch_binned vs torch) | torch 3e-08 · 1; torch_binned 3.1e-07 · 1−2e-11 |" in cpu
    assert "OOM (predicted 9 GiB > limit 8 GiB)" in cpu and "(results/cpu-x/time_vs_n.png)" in cpu
    assert "(results/cuda-y/speedup.png)" in gpu and "no full GPU sweep" not in text
    for folder in ("cpu-x", "cuda-y"):
        assert all((results / folder / name).read_bytes().startswith(PNG) for name in reports.PLOTS)
    harness.append_rows(results / "cpu-x" / "results.csv", _rows("cuda", "GPU Y", "5"))
    with pytest.raises(ValueError, match="cpu-x mixes devices"):
        reports.benchmark_block(results, tmp_path)
    with pytest.raises(ValueError, match="benchmarks:start"):
        reports.replace_block("no markers", "block")


def test_plot_tick_labels_do_not_collide():
    sizes = (64, 128, 256, 512, 768, 1024, 1536, 2048, 4096, 8192, 16384, 32768)
    rows = [_rows("cpu", "CPU X", "1")[0] | {"n": n} for n in sizes]  # torch, fwd
    figure = reports.figure(rows, "time_vs_n.png")
    figure.draw_without_rendering()
    (axis,) = figure.axes
    boxes = [label.get_window_extent() for label in axis.get_xticklabels() if label.get_text()]
    assert [label.get_text() for label in axis.get_xticklabels()][:2] == ["64", "128"] and len(boxes) == 10
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True, capture_output=True
    )


def test_uncommitted_code_is_marked_and_not_stored_without_allow_dirty(tmp_path):
    for path in ("pc_kernels/loss.py", "benchmarks/results/cpu-x/results.csv"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "x")
    clean = harness.source_commit(tmp_path)
    assert len(clean) == 12 and "dirty" not in clean
    (tmp_path / "benchmarks/results/cpu-x/results.csv").write_text("2\n")  # stored results are not code
    assert harness.source_commit(tmp_path) == clean
    (tmp_path / "pc_kernels/loss.py").write_text("2\n")
    assert harness.source_commit(tmp_path) == clean + "-dirty"
    assert harness.source_commit(tmp_path / "no-repository") == "unknown"
    with pytest.raises(SystemExit, match="--allow-dirty"):
        harness.require_clean(clean + "-dirty", harness.RESULTS / "cpu-x", allow_dirty=False)
    harness.require_clean(clean + "-dirty", harness.RESULTS / "cpu-x", allow_dirty=True)
    harness.require_clean(clean + "-dirty", tmp_path, allow_dirty=False)  # outside the repository's results
    assert "commit abc-dirty (uncommitted changes)" in reports.run_label(_rows("cpu", "CPU X", "1", "abc-dirty"))


def test_gpu_check_dry_run_runs_every_step_on_cpu(tmp_path):
    model = tmp_path / "model.json"
    kernels = {"aten::": 0.5, "no_such_kernel": 0.25}
    entries = [
        dict(name="dense_fwd_bwd_fp32_accurate", n=4096, p=256, q=256, predicted_ms=1.0, kernels=kernels),
        dict(name="dense_fwd_bwd_fp32_fast", n=4096, p=256, q=256, predicted_ms=2.0, kernels=kernels),  # not run
    ]
    binned = [dict(name="binned_fwd_bwd_fp32_n16384", n=16384, p=256, q=256, predicted_ms=3.0, kernels=kernels)]
    model.write_text(json.dumps({"predictions": entries, "binned": {"predictions": binned}}))
    out = tmp_path / "check"
    env = {**os.environ, "PC_KERNELS_GPU_CHECK_DRY_RUN": "1", "PC_KERNELS_HOPPER_MODEL": str(model)}
    _run("bash", "benchmarks/gpu_check.sh", str(out), env=env)
    summary = (out / "summary.txt").read_text()
    assert [line.split(":")[0] for line in summary.splitlines()[:3]] == ["tests", "floor", "nccl"]
    assert summary.count(": ok in ") == 3 and "failed steps: 0" in summary
    environment = (out / "env.txt").read_text()
    assert "python:" in environment and f"torch: {torch.__version__}" in environment and "commit:" in environment
    floor = (out / "floor.md").read_text()
    assert (
        "Largest n whose dense fwd+bwd ran within 60 s: 64." in floor and "| mode | n | torch | torch_binned |" in floor
    )
    assert "| fwd_bwd | 16 | " in floor and "× (torch_binned vs torch)" in floor
    where = "| dense_fwd_bwd_fp32_accurate | 4096 | 256 | 256 |"
    assert f"{where} whole call | 1 ms | " in floor and f"{where} aten:: | 0.5 ms | " in floor
    assert f"{where} no_such_kernel | 0.25 ms | not launched |" in floor and "fp32_fast" not in floor
    assert "| binned_fwd_bwd_fp32_n16384 | 16384 | 256 | 256 | whole call | 3 ms | " in floor
    assert json.loads((out / "hopper_model.json").read_text())["predictions"] == entries
    assert "distributed=True matches" in (out / "nccl.log").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_floor_without_a_gpu_exits_with_a_message_not_a_traceback():
    with pytest.raises(SystemExit, match="floor needs a CUDA GPU"):
        main(["floor"])


def test_scaling_exponent_is_fitted_on_log_log_axes():
    sizes = [1024 * 2**k for k in range(6)]
    noise = [1.0, 1.03, 0.98, 1.01, 0.99, 1.02]
    seconds = [3e-7 * n**2 * e for n, e in zip(sizes, noise, strict=True)]
    assert reports.fit_exponent(sizes, seconds) == pytest.approx(2, abs=0.02)
    assert reports.fit_exponent(sizes, [1e-9 * n**3 for n in sizes]) == pytest.approx(3)
    with pytest.raises(ValueError, match="at least two distinct n"):
        reports.fit_exponent([1024], [1.0])
    binned = _rows("cpu", "C", "1")[6]  # torch_binned, fwd_bwd
    rows = [binned | {"n": n, "median_s": 3e-7 * n**2} for n in sizes]
    table = reports.scaling_markdown(rows)
    assert "| 32768 | 322 s | 1 MiB | 300 ns |" in table and "time ∝ n^2.00" in table
