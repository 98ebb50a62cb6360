"""Retrieval and coherence measures computed from embeddings, shared by the harnesses.

Every function takes embeddings as (n, d) tensors and one distance, "euclidean" or "cosine"
(1 − cosine similarity). Neighbours never include the query itself, and ties in a ranking go to
the lower index (a stable sort).

Label-free coherence with the teacher (how alike the student and the teacher perceive):
    spearman_coherence   mean over queries i of Spearman's ρ between the student's and the teacher's
                         distances from i to every other sample
    neighbour_recall     mean over queries of |N_k^student(i) ∩ N_k^teacher(i)| / k: recall@k of the
                         teacher's k nearest neighbours among the student's k nearest
    ndcg_at_k            nDCG@k of the student's ranking, graded by the teacher's (see its docstring)
Label measures (used in evaluation only, never in distillation):
    knn_accuracy         k-NN majority vote against a labelled gallery
    label_recall_at_k    a query scores 1 if one of its k nearest others shares its label
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

METRICS = ("euclidean", "cosine")


def distance_matrix(a: torch.Tensor, b: torch.Tensor, metric: str) -> np.ndarray:
    """(m, d) and (n, d) embeddings → (m, n) float64 distances ("euclidean" or "cosine")."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if metric == "cosine":
        unit_a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
        unit_b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (1.0 - unit_a @ unit_b.T).numpy()
    if metric == "euclidean":
        return torch.cdist(a, b).numpy()
    raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")


def _nearest(distances: np.ndarray, k: int) -> np.ndarray:
    """(m, n) → (m, k) column indices of the k smallest entries of each row, nearest first."""
    return np.argsort(distances, axis=1, kind="stable")[:, :k]


def nearest_others(embeddings: torch.Tensor, k: int, metric: str) -> np.ndarray:
    """(n, d) → (n, k) indices of each sample's k nearest other samples, nearest first."""
    distances = distance_matrix(embeddings, embeddings, metric)
    np.fill_diagonal(distances, np.inf)
    return _nearest(distances, k)


def knn_accuracy(
    gallery: torch.Tensor, gallery_y: torch.Tensor, queries: torch.Tensor, queries_y: torch.Tensor, metric: str, k: int
) -> float:
    """Fraction of queries (m, d) whose k nearest gallery (n, d) samples vote their label.

    Ties in the vote go to the smallest label.
    """
    neighbours = _nearest(distance_matrix(queries, gallery, metric), k)
    labels = gallery_y.cpu().numpy()[neighbours]
    classes = int(max(gallery_y.max(), queries_y.max())) + 1
    votes = np.stack([(labels == c).sum(axis=1) for c in range(classes)], axis=1)
    return float((votes.argmax(axis=1) == queries_y.cpu().numpy()).mean())


def label_recall_at_k(embeddings: torch.Tensor, labels: torch.Tensor, k: int, metric: str) -> float:
    """Fraction of samples (n, d) with a same-label sample among their k nearest others."""
    y = labels.cpu().numpy()
    return float((y[nearest_others(embeddings, k, metric)] == y[:, None]).any(axis=1).mean())


def _off_diagonal_rows(distances: np.ndarray) -> np.ndarray:
    """(n, n) → (n, n − 1): each row without its diagonal entry."""
    n = distances.shape[0]
    return distances[~np.eye(n, dtype=bool)].reshape(n, n - 1)


def _centred_ranks(x: torch.Tensor, metric: str) -> np.ndarray:
    """(n, n − 1) ranks of each sample's distances to the others, each row centred on its mean."""
    ranks = rankdata(_off_diagonal_rows(distance_matrix(x, x, metric)), axis=1)
    return ranks - ranks.mean(axis=1, keepdims=True)


def _mean_correlation(rank_s: np.ndarray, rank_t: np.ndarray) -> float:
    denominator = np.sqrt((rank_s**2).sum(axis=1) * (rank_t**2).sum(axis=1))
    numerator = (rank_s * rank_t).sum(axis=1)
    rho = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
    return float(rho.mean())


def spearman_coherence(student: torch.Tensor, teacher: torch.Tensor, metric: str) -> float:
    """Mean over samples i of Spearman's ρ between the student's and the teacher's distances
    from i to every other sample (student (n, p), teacher (n, q)); a constant row counts as ρ = 0."""
    return _mean_correlation(_centred_ranks(student, metric), _centred_ranks(teacher, metric))


def _recall(near_s: np.ndarray, near_t: np.ndarray, k: int) -> float:
    shared = (near_s[:, :k, None] == near_t[:, None, :k]).any(axis=2).sum(axis=1)
    return float(shared.mean() / k)


def _ndcg(near_s: np.ndarray, near_t: np.ndarray, k: int) -> float:
    n = near_s.shape[0]
    relevance = np.zeros((n, n))
    np.put_along_axis(relevance, near_t[:, :k], np.arange(k, 0, -1, dtype=float)[None, :], axis=1)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (np.take_along_axis(relevance, near_s[:, :k], axis=1) * discount).sum(axis=1)
    return float(dcg.mean() / (np.arange(k, 0, -1) * discount).sum())


def neighbour_recall(student: torch.Tensor, teacher: torch.Tensor, k: int, metric: str) -> float:
    """Mean over samples of the fraction of the teacher's k nearest others that are also among the
    student's k nearest others (recall@k of the teacher's neighbours)."""
    return _recall(nearest_others(student, k, metric), nearest_others(teacher, k, metric), k)


def ndcg_at_k(student: torch.Tensor, teacher: torch.Tensor, k: int, metric: str) -> float:
    """Mean over samples of nDCG@k of the student's k nearest others, graded by the teacher.

    The teacher's r-th nearest other sample (r = 1 … k) has relevance k + 1 − r, every other sample 0;
    DCG@k = Σ_{r=1..k} relevance(student's r-th nearest) / log2(r + 1), divided by the DCG of the teacher's
    own order (Järvelin and Kekäläinen, "Cumulated gain-based evaluation of IR techniques", 2002, with the
    teacher's ranks as graded judgements). 1 when the student's top k is the teacher's, in order.
    """
    return _ndcg(nearest_others(student, k, metric), nearest_others(teacher, k, metric), k)


class TeacherReference:
    """The teacher's side of the retrieval measures of one evaluation set, computed once for many students.

    ``measures(student)`` gives ``recall_at_<k>`` (``neighbour_recall``) for each k of ``recall_ks``,
    ``ndcg_at_<k>`` (``ndcg_at_k``) and ``spearman`` (``spearman_coherence``), each equal to the function
    it is named after.
    """

    def __init__(self, teacher: torch.Tensor, recall_ks: tuple[int, ...], ndcg_k: int, metric: str) -> None:
        self.recall_ks, self.ndcg_k, self.metric = recall_ks, ndcg_k, metric
        self.depth = max(*recall_ks, ndcg_k)
        self.near = nearest_others(teacher, self.depth, metric)
        self.ranks = _centred_ranks(teacher, metric)

    def measures(self, student: torch.Tensor) -> dict[str, float]:
        """Every measure of ``student`` (n, p) against the teacher, by name."""
        near = nearest_others(student, self.depth, self.metric)
        out = {f"recall_at_{k}": _recall(near, self.near, k) for k in self.recall_ks}
        out[f"ndcg_at_{self.ndcg_k}"] = _ndcg(near, self.near, self.ndcg_k)
        out["spearman"] = _mean_correlation(_centred_ranks(student, self.metric), self.ranks)
        return out
