"""Triton kernels of the triton backend (imported only by ``pc_kernels.triton_backend``).

    dissimilarity.py   tiled pairwise dissimilarity (tl.dot Gram form), forward and backward to features
    soft_rank.py       fused soft ranks of student and teacher + discrepancy moments; rank gradient
    launch.py          interpreter / GPU launch facts and the opt-in fast sigmoid switch
"""

from .dissimilarity import dissimilarity_backward, dissimilarity_forward
from .soft_rank import MOMENTS, soft_rank_backward, soft_rank_forward

__all__ = ["MOMENTS", "dissimilarity_backward", "dissimilarity_forward", "soft_rank_backward", "soft_rank_forward"]
