"""The four stage interfaces a computation path is made of; ``registry.py`` lists their implementations.

``pc_kernels.pipeline`` runs, for each block of reference rows and each side (student, teacher), in the
candidate layout (``layout.py``: rows of w = n − 1 candidates):

    prepared features ─DissimilarityStage.rows─▶ d (c, w) ─RowScaleStage─▶ factors (c,) ─RankStage.ranks─▶ R
    R^S, R^T ─Discrepancy.losses─▶ ℓ (c,)

and the backward in reverse: Discrepancy.backward (∂ℓ → ∂R), RankStage.backward (∂R → ∂y, y = factor·d),
RowScaleStage.backward (∂y → ∂d), DissimilarityStage.accumulate_gradient (∂d → ∂features).

An implementation is a subclass of one interface. The pipeline makes each stage of a call once, by
``from_settings(settings)``, from the call's ``pc_kernels.settings.Settings``: a stage reads the settings
it needs there by name (``settings.plan.tile_rows``, ``settings.options.tau``) and takes them as plain
constructor arguments, so it can be built and tested without a plan. Stages hold no tensors between
calls; the backward recomputes or is handed whatever it needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, TypeVar

import torch

if TYPE_CHECKING:
    from ..settings import Settings
    from .distances import PreparedFeatures
    from .row_scale import RowScale

S = TypeVar("S", bound="Stage")


class Stage:
    """What every stage implementation has: its construction from the settings of a call."""

    @classmethod
    def from_settings(cls: type[S], settings: Settings) -> S:
        """The stage for a call with these settings (default: a stage that reads no setting)."""
        return cls()


class DissimilarityStage(Stage, ABC):
    """Candidate dissimilarities of a block of reference rows, by the dissimilarity policy of
    ``distances.py`` (prepared features, float64 Gram form, snap), and their backward."""

    @abstractmethod
    def rows(self, prepared: PreparedFeatures, start: int, end: int) -> torch.Tensor:
        """(end − start, n − 1) candidate dissimilarities D' of reference rows start … end − 1, in the
        computation dtype ``prepared.dtype``, in units of 2^u (u = ``prepared.unit_exponent``)."""

    @abstractmethod
    def accumulate_gradient(
        self, prepared: PreparedFeatures, start: int, d: torch.Tensor, grad_d: torch.Tensor, out: torch.Tensor
    ) -> None:
        """Add ∂L/∂(prepared features) to ``out`` (n, p) float64, from candidate rows d (c, n − 1) of
        reference rows start … start + c − 1 and their gradient grad_d = ∂L/∂d."""


class RowScaleStage(Stage, ABC):
    """The per-reference factor c of the ``normalize`` option (``row_scale.py``), forward and backward."""

    @abstractmethod
    def statistics(self, d: torch.Tensor) -> torch.Tensor:
        """(m, 4) float64: each row's mean, population standard deviation, minimum and maximum of d (m, w)."""

    @abstractmethod
    def scale(self, statistics: torch.Tensor, exponent: torch.Tensor, dtype: torch.dtype) -> RowScale:
        """The row scale (factors in ``dtype``) of rows with these ``statistics``, for dissimilarities in
        units of 2^exponent."""

    @abstractmethod
    def backward(self, d: torch.Tensor, scale: RowScale, grad_y: torch.Tensor) -> torch.Tensor:
        """∂L/∂d (m, w) in d's dtype from ∂L/∂y (m, w), y = factor·d."""


class RankStage(Stage, ABC):
    """Soft ranks R_j = (1/(w − 1)) Σ_{k != j} σ(y_j − y_k), y = factor·d, of each row, and their backward
    (docs/spec.md, "Soft rank")."""

    @abstractmethod
    def ranks(self, d: torch.Tensor, scale: RowScale) -> torch.Tensor:
        """Soft ranks R (m, w) of candidate rows d (m, w), w >= 2, with the rows' ``scale`` (factors,
        and each row's extremes in ``scale.low``, ``scale.high``)."""

    @abstractmethod
    def backward(self, d: torch.Tensor, scale: RowScale, grad_ranks: torch.Tensor) -> torch.Tensor:
        """∂L/∂y (m, w), y = factor·d, from G = ∂L/∂R (m, w)."""


class Discrepancy(Stage, ABC):
    """The per-reference discrepancy ℓ between student and teacher ranks (``discrepancy.py``)."""

    @abstractmethod
    def losses(self, rs: torch.Tensor, rt: torch.Tensor) -> torch.Tensor:
        """ℓ (m,) from student and teacher ranks (m, w)."""

    @abstractmethod
    def backward(
        self, rs: torch.Tensor, rt: torch.Tensor, grad_losses: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(∂L/∂R^S, ∂L/∂R^T), each (m, w), for ∂L/∂ℓ = grad_losses (m,)."""
