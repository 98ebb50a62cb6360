"""Every stage implementation, under the name the plan or the options choose it by.

    interface (interfaces.py)   chosen by                               registry
    DissimilarityStage          (plan.distance_stage, plan.loops)       DISSIMILARITY_STAGES
    RowScaleStage               plan.loops                              ROW_SCALE_STAGES
    RankStage                   (plan.rank_stage, plan.loops)           RANK_STAGES
    Discrepancy                 options.discrepancy                     DISCREPANCIES

``plan.loops`` is "numba" on CPU tensors with numba installed, else "torch". An implementation
registered under loops "torch" runs on every device; one registered under "numba" replaces it on CPU
(compiled loops, ``numba_loops.py``). A stage without compiled loops is registered under "torch" only
and serves both.

An entry names its class as "module.Class" of this package, imported on first use: the Triton stages
import triton, which must not happen unless the plan chose them. ``build`` makes the stages of one call,
once per custom op call. Adding a computation path is adding its stage module and one entry here (and
the name to the plan's choice, ``pc_kernels/plan.py``).
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from .interfaces import Discrepancy, DissimilarityStage, RankStage, RowScaleStage, Stage

if TYPE_CHECKING:
    from ..settings import Settings

S = TypeVar("S", bound=Stage)

DISSIMILARITY_STAGES = {
    ("torch", "torch"): "distances.TorchDissimilarity",
    ("torch", "numba"): "distances.NumbaDissimilarity",
    ("triton", "torch"): "triton_distances.TritonDissimilarity",
}
ROW_SCALE_STAGES = {
    "torch": "row_scale.TorchRowScale",
    "numba": "row_scale.NumbaRowScale",
}
RANK_STAGES = {
    ("dense", "torch"): "dense_ranks.DenseRanks",
    ("triton", "torch"): "triton_ranks.TritonRanks",
    ("binned", "torch"): "binned_ranks.BinnedRanks",
    ("binned", "numba"): "binned_ranks.NumbaBinnedRanks",
    ("triton_binned", "torch"): "triton_binned_ranks.TritonBinnedRanks",
}
DISCREPANCIES = {
    "mse": "discrepancy.MeanSquaredError",
    "spearman": "discrepancy.Spearman",
    "reciprocal_rank_mse": "discrepancy.ReciprocalRankMeanSquaredError",
}


@functools.cache
def load(entry: str) -> type:
    """The class an entry ("module.Class" of this package) names, its module imported on first use."""
    module, name = entry.rsplit(".", 1)
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def chosen(registry: dict, name: str, loops: str) -> str:
    """The entry registered for (name, loops), or for (name, "torch") when the stage has no compiled loops."""
    return registry.get((name, loops)) or registry[(name, "torch")]


def make(entry: str, interface: type[S], settings: Settings) -> S:
    """The stage ``entry`` names, made from ``settings``.

    Raises:
        TypeError: the entry's class does not implement ``interface``.
    """
    cls = load(entry)
    if not issubclass(cls, interface):
        raise TypeError(f"stage entry {entry!r} is registered as a {interface.__name__} but does not implement it")
    return cls.from_settings(settings)


class Stages(NamedTuple):
    """The stages of one call's path."""

    dissimilarity: DissimilarityStage
    row_scale: RowScaleStage
    ranks: RankStage
    discrepancy: Discrepancy


def build(settings: Settings) -> Stages:
    """The stages the call's plan and options chose, made from its settings."""
    plan, loops = settings.plan, settings.plan.loops
    return Stages(
        make(chosen(DISSIMILARITY_STAGES, plan.distance_stage, loops), DissimilarityStage, settings),
        make(ROW_SCALE_STAGES[loops], RowScaleStage, settings),
        make(chosen(RANK_STAGES, plan.rank_stage, loops), RankStage, settings),
        make(DISCREPANCIES[settings.options.discrepancy], Discrepancy, settings),
    )
