"""The static Hopper (sm_90) model of the kernels, against its stored results, and the sigmoid's accuracy.

The model (benchmarks/hopper_model.py) compiles every kernel variant for sm_90 without a GPU, in a subprocess
since TRITON_INTERPRET must be unset there (tests/conftest.py sets it for CPU runs). A fresh run must show no
spill, no more special-function operations per evaluation than each variant's formula needs, and no predicted
bound more than 5 % above the stored benchmarks/results/hopper_model.json. The sigmoid's error, at the scaled
arguments t the rank kernels pass it, is checked on the model's numpy emulation of its float32 sm_90
instructions and by running the jit functions themselves (interpreted on CPU, compiled on a GPU); the docs show
the stored tables. The binned grid kernels must compile without spills, deposit with one atomic per tap, and
keep their predicted fwd+bwd times within the stored ones and the targets (benchmarks/hopper_binned.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("triton")
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# benchmarks/ is a top-level folder of the repository, not part of the installed package.
sys.path.insert(0, str(REPO))

from benchmarks.hopper_model import (  # noqa: E402
    MARKERS,
    emulate,
    emulate_separable,
    render,
    separable_exponents,
    sigmoid_accuracy,
    sweep,
    true_sigmoid,
)
from pc_kernels.kernels.sigmoid import separable_sigmoid, separable_sigmoid_slope, sigmoid, sigmoid_slope  # noqa: E402

STORED = json.loads((REPO / "benchmarks" / "results" / "hopper_model.json").read_text())
VARIANTS = [v["name"] for v in STORED["variants"]]
TOLERANCE = 1.05
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FLT_MIN = 2.0**-126


def needed_special_functions(name: str) -> float:
    """Special-function operations per evaluation the variant's formula needs: none in the distance loop; float64
    one reciprocal seed (its exp is a polynomial); fast one tanh; float32 accurate one exp2 and a quarter of a
    reciprocal shared by four elements; float32 separable one reciprocal."""
    if name.startswith("dissimilarity"):
        return 0.0
    return 1.0 if "float64" in name or name.endswith(("fast", "separable")) else 1.25


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("hopper_model")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    subprocess.run(
        [sys.executable, "-m", "benchmarks", "hopper", "--out", str(out), "--stride", "65521"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return json.loads((out / "hopper_model.json").read_text())


def test_every_stored_variant_is_modelled(fresh: dict) -> None:
    assert [v["name"] for v in fresh["variants"]] == VARIANTS


@pytest.mark.parametrize("name", VARIANTS)
def test_no_spills(fresh: dict, name: str) -> None:
    record = next(v for v in fresh["variants"] if v["name"] == name)
    assert (record["spill_instructions"], record["stack_bytes"]) == (0, 0)


@pytest.mark.parametrize("name", VARIANTS)
def test_no_more_special_functions_per_evaluation_than_needed(fresh: dict, name: str) -> None:
    record = next(v for v in fresh["variants"] if v["name"] == name)
    assert record["special_per_evaluation"] <= needed_special_functions(name)


@pytest.mark.parametrize("name", [v["name"] for v in STORED["variants"] if "floor_multiple" in v])
def test_variant_bound_not_above_stored(fresh: dict, name: str) -> None:
    stored = next(v for v in STORED["variants"] if v["name"] == name)["floor_multiple"]["bound"]
    assert next(v for v in fresh["variants"] if v["name"] == name)["floor_multiple"]["bound"] <= TOLERANCE * stored


@pytest.mark.parametrize("name", [p["name"] for p in STORED["predictions"]])
def test_prediction_not_above_stored(fresh: dict, name: str) -> None:
    stored = next(p for p in STORED["predictions"] if p["name"] == name)["predicted_ms"]
    assert next(p for p in fresh["predictions"] if p["name"] == name)["predicted_ms"] <= TOLERANCE * stored


BINNED = [v["name"] for v in STORED["binned"]["variants"]]


def test_every_stored_binned_variant_is_modelled_without_spills(fresh: dict) -> None:
    assert [v["name"] for v in fresh["binned"]["variants"]] == BINNED
    assert all((v["spill_instructions"], v["stack_bytes"]) == (0, 0) for v in fresh["binned"]["variants"])


@pytest.mark.parametrize("name", [v for v in BINNED if v.startswith("grid_deposit")])
def test_each_deposit_adds_four_taps_per_weight_set_with_one_atomic_each(fresh: dict, name: str) -> None:
    record = next(v for v in fresh["binned"]["variants"] if v["name"] == name)
    assert record["atomics_per_item"] == (8 if name.endswith("weighted") else 4)


@pytest.mark.parametrize("name", [p["name"] for p in STORED["binned"]["predictions"]])
def test_binned_prediction_not_above_stored_and_within_target(fresh: dict, name: str) -> None:
    stored = next(p for p in STORED["binned"]["predictions"] if p["name"] == name)
    prediction = next(p for p in fresh["binned"]["predictions"] if p["name"] == name)
    for gpu, times in prediction["gpus"].items():
        assert times["predicted_ms"] <= TOLERANCE * stored["gpus"][gpu]["predicted_ms"]
        assert times["predicted_ms"] <= times["target_ms"]


def test_docs_and_results_show_the_stored_tables() -> None:
    table = render(STORED)
    docs = (REPO / "docs" / "hopper_model.md").read_text()
    assert docs.split(MARKERS[0])[1].split(MARKERS[1])[0] == "\n" + table
    assert (REPO / "benchmarks" / "results" / "hopper_model.md").read_text().endswith(table)


def test_accurate_fwd_bwd_within_the_target(fresh: dict) -> None:
    """The accurate float32 fwd+bwd, every row separable, at most 1.15× the floor (the wide rows' per-pair form
    stays where it was)."""
    multiples = {p["name"]: p["multiple"]["bound"] for p in fresh["predictions"]}
    assert multiples["dense_fwd_bwd_fp32_accurate"] <= 1.15
    assert multiples["dense_fwd_bwd_fp32_accurate_wide_rows"] <= 1.4


def test_emulated_sigmoid_error_within_bounds() -> None:
    errors = {(a["form"], a["function"]): a for a in sigmoid_accuracy(stride=8191)}
    assert not any(a["nan"] for a in errors.values())
    for form in ("accurate", "separable"):
        assert max(errors[form, f]["max_relative_error"] for f in ("sigmoid", "slope")) <= 1e-6
    assert max(errors["fast", f]["max_absolute_error"] for f in ("sigmoid", "slope")) <= 2.0**-12 * (1 + 1e-3)


@triton.jit
def _sigmoid_kernel(t_ptr, sigma_ptr, slope_ptr, FAST: tl.constexpr, ROWS: tl.constexpr):
    """σ and σ' at arguments t = z·SCALE, already scaled as the rank kernels pass them."""
    offsets = tl.program_id(0) * ROWS * 64 + tl.arange(0, ROWS)[:, None] * 64 + tl.arange(0, 64)[None, :]
    t = tl.load(t_ptr + offsets)
    tl.store(sigma_ptr + offsets, sigmoid(t, FAST))
    tl.store(slope_ptr + offsets, sigmoid_slope(t, FAST))


def _sweep(stride: int, rows: int) -> np.ndarray:
    """The model's float32 sweep of t (every stride-th float32 up to its limit, both signs, ±inf), padded with
    zeros to whole programs."""
    t = sweep(stride)
    return np.concatenate([t, np.zeros(-len(t) % (rows * 64), np.float32)])


def _run(t: np.ndarray, dtype: torch.dtype, fast: bool, rows: int) -> tuple[np.ndarray, np.ndarray]:
    tt = torch.from_numpy(t).to(device=DEVICE, dtype=dtype)
    sigma, slope = torch.full_like(tt, float("nan")), torch.full_like(tt, float("nan"))
    _sigmoid_kernel[(len(t) // (rows * 64),)](tt, sigma, slope, FAST=fast, ROWS=rows)
    return sigma.double().cpu().numpy(), slope.double().cpu().numpy()


def _relative(got: np.ndarray, truth: np.ndarray) -> np.ndarray:
    normal = truth >= FLT_MIN
    return np.where(normal, np.abs(got - truth) / np.where(normal, truth, 1), 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigmoid_kernel_error_and_contract(dtype: torch.dtype) -> None:
    rows = 256
    t = _sweep(2053, rows)
    sigma, slope = _run(t, dtype, fast=False, rows=rows)
    true_sigma, true_slope = true_sigmoid(t, fast=False)
    assert not np.isnan(sigma).any() and not np.isnan(slope).any()
    assert ((sigma >= 0) & (sigma <= 1) & (slope >= 0) & (slope <= 0.25 * (1 + 2.0**-21))).all()
    infinite = np.isinf(t)
    assert (sigma[infinite] == (t[infinite] > 0)).all() and (slope[infinite] == 0).all()
    sigma_bound, slope_bound = (1e-6, 1e-6) if dtype == torch.float32 else (1e-13, 1e-13)
    assert _relative(sigma, true_sigma).max() <= sigma_bound
    assert _relative(slope, true_slope).max() <= slope_bound
    assert np.abs(sigma - true_sigma)[true_sigma < FLT_MIN].max() <= FLT_MIN
    if dtype == torch.float32 and DEVICE == "cpu":  # the emulation is the interpreted formula to 8 ulp
        for is_slope, got, truth in ((False, sigma, true_sigma), (True, slope, true_slope)):
            emulated = emulate(t, is_slope, fast=False).astype(np.float64)
            normal = truth >= FLT_MIN
            assert (np.abs(emulated - got)[normal] / got[normal]).max() <= 2.0**-21


@triton.jit
def _separable_kernel(a_ptr, b_ptr, sigma_ptr, slope_ptr, ROWS: tl.constexpr):
    """σ and σ' of the separable form from its factors A and B."""
    offsets = tl.program_id(0) * ROWS * 64 + tl.arange(0, ROWS)[:, None] * 64 + tl.arange(0, 64)[None, :]
    a, b = tl.load(a_ptr + offsets), tl.load(b_ptr + offsets)
    tl.store(sigma_ptr + offsets, separable_sigmoid(a, b))
    tl.store(slope_ptr + offsets, separable_sigmoid_slope(a, b))


def test_separable_sigmoid_kernel_error() -> None:
    """The separable form at the model's sweep of t, in random places of a row, from float32 factors rounded to
    nearest: within 1e-6 of float64 σ(s_j − s_k), and (on CPU) the emulation is the interpreted formula to 8 ulp."""
    rows = 256
    t = _sweep(2053, rows)
    s_j, s_k = separable_exponents(np.where(np.isfinite(t), t, 0), draw=0)  # a separable row has finite values
    a = torch.from_numpy(np.exp2(-s_j)).float().to(DEVICE)
    b = torch.from_numpy(np.exp2(s_k)).float().to(DEVICE)
    sigma, slope = torch.full_like(a, float("nan")), torch.full_like(a, float("nan"))
    _separable_kernel[(len(t) // (rows * 64),)](a, b, sigma, slope, ROWS=rows)
    got = {"sigmoid": sigma.double().cpu().numpy(), "slope": slope.double().cpu().numpy()}
    truths = dict(zip(("sigmoid", "slope"), true_sigmoid(s_j - s_k, fast=False), strict=True))
    for function, truth in truths.items():
        assert not np.isnan(got[function]).any()
        assert _relative(got[function], truth).max() <= 1e-6
        if DEVICE == "cpu":
            emulated = emulate_separable(s_j, s_k, function == "slope").astype(np.float64)
            normal = truth >= FLT_MIN
            assert (np.abs(emulated - got[function])[normal] / got[function][normal]).max() <= 2.0**-21


@pytest.mark.skipif(DEVICE == "cpu", reason="the fast form's tanh.approx runs on CUDA only")
def test_fast_sigmoid_kernel_error() -> None:
    t = _sweep(2053, 256)
    sigma, slope = _run(t, torch.float32, fast=True, rows=256)
    true_sigma, true_slope = true_sigmoid(t, fast=True)
    assert np.abs(sigma - true_sigma).max() <= 2.0**-12 and np.abs(slope - true_slope).max() <= 2.0**-12
