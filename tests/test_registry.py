"""The stage registry and the settings record (pc_kernels/stages/registry.py, pc_kernels/settings.py):
every entry is an implementation of its interface, the plan's names choose the expected stages (numba
ones replacing torch ones on CPU only where they exist), and the settings cross a custom op intact."""

from __future__ import annotations

import pytest
import torch

from helpers import DEVICE, usable_paths
from pc_kernels import plan as plan_module
from pc_kernels.options import LossOptions
from pc_kernels.settings import Settings
from pc_kernels.stages import interfaces, registry

REGISTRIES = [
    (registry.DISSIMILARITY_STAGES, interfaces.DissimilarityStage),
    (registry.ROW_SCALE_STAGES, interfaces.RowScaleStage),
    (registry.RANK_STAGES, interfaces.RankStage),
    (registry.DISCREPANCIES, interfaces.Discrepancy),
]
ENTRIES = [
    pytest.param(entry, interface, id=entry)
    for stages, interface in REGISTRIES
    for entry in stages.values()
    if plan_module._TRITON_INSTALLED or not entry.startswith("triton")
]


def _settings(n: int = 12, **options) -> Settings:
    validated = LossOptions(**options).validated()
    plan = plan_module.resolve_plan(validated, torch.device(DEVICE), n, 5, torch.float64, soft_sides=2)
    return Settings(validated, plan)


@pytest.mark.parametrize("entry, interface", ENTRIES)
def test_every_entry_implements_its_interface(entry: str, interface: type) -> None:
    cls = registry.load(entry)
    assert issubclass(cls, interface) and not getattr(cls, "__abstractmethods__", None)


def test_an_entry_of_the_wrong_interface_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="'dense_ranks.DenseRanks' is registered as a Discrepancy"):
        registry.make("dense_ranks.DenseRanks", interfaces.Discrepancy, _settings())


@pytest.mark.parametrize("path", [path for path in usable_paths() if path.backend != "reference"], ids=str)
@pytest.mark.parametrize("discrepancy", ["mse", "spearman"])
def test_the_plan_names_choose_the_stages(path, discrepancy: str) -> None:
    settings = _settings(discrepancy=discrepancy, **path.options)
    plan = settings.plan
    stages = registry.build(settings)
    cpu = "Numba" if plan.loops == "numba" else ""  # compiled loops replace torch where a stage has them
    dissimilarity = {"triton": "TritonDissimilarity", "torch": f"{cpu or 'Torch'}Dissimilarity"}
    ranks = {
        "triton": "TritonRanks",
        "dense": "DenseRanks",
        "binned": f"{cpu}BinnedRanks",
        "triton_binned": "TritonBinnedRanks",  # no compiled CPU loops: the Triton kernels on every device
    }
    assert type(stages.dissimilarity).__name__ == dissimilarity[plan.distance_stage]
    assert type(stages.ranks).__name__ == ranks[plan.rank_stage]
    assert type(stages.row_scale).__name__ == f"{cpu or 'Torch'}RowScale"
    assert type(stages.discrepancy).__name__ == {"mse": "MeanSquaredError", "spearman": "Spearman"}[discrepancy]


def test_stages_read_their_settings_by_name() -> None:
    settings = _settings(tau=0.37, normalize="none", algorithm="binned", bins=33, backend="torch")
    stages = registry.build(settings)
    assert (stages.row_scale.tau, stages.row_scale.normalize) == (0.37, "none")
    assert stages.ranks.bins == 33
    dense = registry.build(_settings(backend="torch"))
    assert dense.ranks.tile_rows == settings.plan.tile_rows


@pytest.mark.parametrize(
    "options",
    [dict(), dict(tau=1e-300, rows=(2, 9), chunk_rows=3, discrepancy="spearman"), dict(algorithm="binned", bins=7)],
    ids=["defaults", "rows", "binned"],
)
def test_settings_cross_a_custom_op_intact(options: dict) -> None:
    settings = _settings(**options)
    text, sizes = settings.pack()
    assert Settings.unpack(text, sizes) == settings
    start, end = settings.plan.rows
    assert sizes == [start, end, settings.plan.block_rows, settings.plan.tile_rows]
    assert f"rows={settings.options.rows!r}" in text  # an option's rows are text: known before the batch
