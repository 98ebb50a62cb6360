"""Exact average ranks of candidate rows (``teacher_ranks="hard"``, ``soft_ranks(hard=True)``), shared by
every fast path: R_j = (#{k: d_k < d_j} + ½ #{k != j: d_k = d_j}) / (w − 1) by sorting, O(w log w) per
row (the step function H of docs/spec.md, ½ at ties; scipy's ``rankdata(method="average")``, less one, over n − 2).
"""

from __future__ import annotations

import torch


def hard_ranks(d: torch.Tensor) -> torch.Tensor:
    """(m, w) exact average ranks of each row of d (m, w), rescaled to [0, 1]; no gradient."""
    values = d.detach().contiguous()
    ordered = values.sort(dim=1).values
    below = torch.searchsorted(ordered, values, right=False)
    at_or_below = torch.searchsorted(ordered, values, right=True)
    return (below + at_or_below - 1).to(values.dtype) / (2.0 * (values.shape[1] - 1))
