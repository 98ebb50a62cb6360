"""The candidate layout every stage shares, and its conversions to and from square matrices.

A block of reference rows i = start … start + c − 1 of an (n, n) matrix is kept as (c, n − 1): row r
holds the entries j != i of row start + r in their order (the diagonal entry removed), so every per-row
statistic is a plain reduction over the last dimension. Off-diagonal entries in row-major order are
exactly the entries between consecutive diagonal positions r (n + 1) + start of the flattened block,
which gives both conversions as one copy through strided views.
"""

from __future__ import annotations

import torch


def _pieces(c: int, n: int, start: int) -> tuple[slice, slice, slice]:
    """Slices of a flattened (c, n) block: before the first diagonal entry, between the first and the
    last (c − 1 runs of n + 1 entries, each ending with a diagonal one), and after the last."""
    first = start + 1
    last = first + (c - 1) * (n + 1)
    return slice(0, start), slice(first, last), slice(last, c * n)


def drop_diagonal(block: torch.Tensor, start: int) -> torch.Tensor:
    """(c, n) rows start … start + c − 1 of a square matrix → (c, n − 1) candidate layout (a new tensor)."""
    c, n = block.shape
    flat = block.reshape(-1)
    head, body, tail = _pieces(c, n, start)
    middle = flat[body].view(c - 1, n + 1)[:, :n].reshape(-1)
    return torch.cat((flat[head], middle, flat[tail])).view(c, n - 1)


def insert_diagonal(candidates: torch.Tensor, start: int) -> torch.Tensor:
    """(c, n − 1) candidate layout of rows start … start + c − 1 → (c, n) rows with a zero diagonal."""
    c, w = candidates.shape
    n = w + 1
    out = candidates.new_zeros((c, n))
    flat, values = out.view(-1), candidates.reshape(-1)
    head, body, tail = _pieces(c, n, start)
    flat[head] = values[: head.stop]
    flat[body].view(c - 1, n + 1)[:, :n] = values[head.stop : head.stop + (c - 1) * n].view(c - 1, n)
    flat[tail] = values[head.stop + (c - 1) * n :]
    return out
