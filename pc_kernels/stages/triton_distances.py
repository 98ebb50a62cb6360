"""The Triton dissimilarity stage: candidate rows by the fused kernel of ``kernels/dissimilarity.py``
(the distance policy of ``distances.py``, whose matrix-product backward it shares)."""

from __future__ import annotations

import torch

from ..kernels.dissimilarity import dissimilarity_forward
from .distances import SNAP, PreparedFeatures


def triton_candidate_rows(prepared: PreparedFeatures, start: int, end: int) -> torch.Tensor:
    """(end − start, n − 1) candidate dissimilarities D' of reference rows start … end − 1."""
    return dissimilarity_forward(prepared.features, prepared.norms, prepared.kind, start, end, SNAP, prepared.dtype)
