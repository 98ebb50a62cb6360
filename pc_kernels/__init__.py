"""pc_kernels: the perception coherence distillation loss, with fused Triton kernels.

Public API:
    PerceptionCoherenceLoss      nn.Module form of the loss
    perception_coherence_loss    functional form
    soft_ranks                   (n, n) soft or hard rank matrix of one feature set
    pairwise_dissimilarity       (n, n) dissimilarity matrix
    resolve_backend              which backend "auto" (or a name) means for a device
    available_backends           backends usable for a device here
"""

from ._version import __version__
from .loss import PerceptionCoherenceLoss, pairwise_dissimilarity, perception_coherence_loss, soft_ranks
from .plan import available_backends, resolve_backend

__all__ = [
    "PerceptionCoherenceLoss",
    "__version__",
    "available_backends",
    "pairwise_dissimilarity",
    "perception_coherence_loss",
    "resolve_backend",
    "soft_ranks",
]
