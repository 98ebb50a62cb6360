"""An independent brute-force implementation of docs/spec.md: plain Python loops over floats.

It shares no code with the package (no torch, no vectorization) so that agreement between
the two is evidence that both follow the specification, not that they share a bug.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Matrix = list[list[float]]


def dissimilarity(a: Sequence[float], b: Sequence[float], kind: str) -> float:
    if kind == "cosine":
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        na = max(math.sqrt(sum(x * x for x in a)), 1e-8)
        nb = max(math.sqrt(sum(y * y for y in b)), 1e-8)
        return 1.0 - dot / (na * nb)
    sq = sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    return sq if kind == "sqeuclidean" else math.sqrt(sq)


def scaled_dissimilarities(x: Sequence[Sequence[float]], kind: str, normalize: str) -> Matrix:
    n = len(x)
    d = [[dissimilarity(x[i], x[j], kind) if i != j else 0.0 for j in range(n)] for i in range(n)]
    if normalize == "none":
        return d
    out = []
    for i in range(n):
        row = [d[i][j] for j in range(n) if j != i]
        mean = sum(row) / len(row)
        std = math.sqrt(sum((v - mean) ** 2 for v in row) / len(row))
        out.append([d[i][j] / (std + 1e-12) for j in range(n)])
    return out


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _step(z: float) -> float:
    return 1.0 if z > 0 else (0.5 if z == 0 else 0.0)


def ranks(x: Sequence[Sequence[float]], tau: float, kind: str, normalize: str, hard: bool) -> Matrix:
    d = scaled_dissimilarities(x, kind, normalize)
    n = len(x)
    r = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if j == i:
                continue
            total = 0.0
            for k in range(n):
                if k in (i, j):
                    continue
                total += _step(d[i][j] - d[i][k]) if hard else _sigmoid((d[i][j] - d[i][k]) / tau)
            r[i][j] = total / (n - 2)
    return r


def row_losses(
    student: Sequence[Sequence[float]],
    teacher: Sequence[Sequence[float]],
    *,
    tau: float,
    dissimilarity: str,
    discrepancy: str,
    teacher_ranks: str,
    normalize: str,
) -> list[float]:
    n = len(student)
    rs = ranks(student, tau, dissimilarity, normalize, hard=False)
    rt = ranks(teacher, tau, dissimilarity, normalize, hard=teacher_ranks == "hard")
    losses = []
    for i in range(n):
        a = [rs[i][j] for j in range(n) if j != i]
        b = [rt[i][j] for j in range(n) if j != i]
        m = len(a)
        if discrepancy == "mse":
            losses.append(sum((u - v) ** 2 for u, v in zip(a, b, strict=True)) / m)
            continue
        if discrepancy == "reciprocal_rank_mse":
            weights = [1.0 / (1.0 + (n - 2) * v) for v in b]
            weighted = sum(c * (u - v) ** 2 for c, u, v in zip(weights, a, b, strict=True))
            losses.append(weighted / sum(weights))
            continue
        ma, mb = sum(a) / m, sum(b) / m
        cov = sum((u - ma) * (v - mb) for u, v in zip(a, b, strict=True)) / m
        va = sum((u - ma) ** 2 for u in a) / m
        vb = sum((v - mb) ** 2 for v in b) / m
        losses.append(1.0 - cov / math.sqrt(va * vb + 1e-12))
    return losses


def reduce(losses: list[float], reduction: str) -> float | list[float]:
    if reduction == "mean":
        return sum(losses) / len(losses)
    if reduction == "sum":
        return sum(losses)
    return losses
