"""The Triton dissimilarity stage: candidate rows by the fused kernel of ``kernels/dissimilarity.py``
(the dissimilarity policy of ``distances.py``, whose matrix-product backward it shares)."""

from __future__ import annotations

import torch

from ..kernels.dissimilarity import dissimilarity_forward
from .distances import SNAP, PreparedFeatures, TorchDissimilarity


class TritonDissimilarity(TorchDissimilarity):
    """Candidate rows by one fused kernel per block; the backward is the torch stage's."""

    def rows(self, prepared: PreparedFeatures, start: int, end: int) -> torch.Tensor:
        f, norms = prepared.features, prepared.norms
        return dissimilarity_forward(f, norms, prepared.dissimilarity, start, end, SNAP, prepared.dtype)
