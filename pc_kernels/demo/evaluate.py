"""Evaluation on the held-out split, from embeddings only.

Task measures (labels are used here, never in distillation):
    knn_accuracy       5-NN majority vote, training-split embeddings as the labelled gallery
    recall_at_1/5      a held-out query scores 1 if one of its K nearest other held-out samples
                       has its label (the usual retrieval Recall@K)
Label-free coherence with the teacher (how alike the student and the teacher perceive):
    spearman           mean over held-out samples i of the Spearman correlation between the
                       student's and the teacher's distances from i to the other held-out samples
    neighbour_overlap  mean over i of |N10_student(i) ∩ N10_teacher(i)| / 10, N10 the 10 nearest
                       other held-out samples
Every measure uses one distance, "euclidean" or "cosine" (1 − cosine similarity).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

MEASURES = ("knn_accuracy", "recall_at_1", "recall_at_5", "spearman", "neighbour_overlap")
KNN_NEIGHBOURS = 5
OVERLAP_NEIGHBOURS = 10


def distance_matrix(a: torch.Tensor, b: torch.Tensor, metric: str) -> np.ndarray:
    """(m, d) and (n, d) embeddings → (m, n) float64 distances ("euclidean" or "cosine")."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if metric == "cosine":
        unit_a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
        unit_b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (1.0 - unit_a @ unit_b.T).numpy()
    if metric == "euclidean":
        return torch.cdist(a, b).numpy()
    raise ValueError(f"metric must be 'euclidean' or 'cosine'; got {metric!r}")


def _nearest(distances: np.ndarray, k: int) -> np.ndarray:
    """(m, n) → (m, k) column indices of the k smallest entries of each row, nearest first."""
    return np.argsort(distances, axis=1, kind="stable")[:, :k]


def _without_self(distances: np.ndarray) -> np.ndarray:
    """A square distance matrix with each sample infinitely far from itself."""
    out = distances.copy()
    np.fill_diagonal(out, np.inf)
    return out


def knn_accuracy(
    gallery: torch.Tensor,
    gallery_y: torch.Tensor,
    queries: torch.Tensor,
    queries_y: torch.Tensor,
    metric: str,
    k: int = KNN_NEIGHBOURS,
) -> float:
    """Fraction of queries (m, d) whose k nearest gallery (n, d) samples vote their label.

    Ties in the vote go to the smallest label.
    """
    neighbours = _nearest(distance_matrix(queries, gallery, metric), k)
    labels = gallery_y.cpu().numpy()[neighbours]
    classes = int(max(gallery_y.max(), queries_y.max())) + 1
    votes = np.stack([(labels == c).sum(axis=1) for c in range(classes)], axis=1)
    return float((votes.argmax(axis=1) == queries_y.cpu().numpy()).mean())


def recall_at_k(embeddings: torch.Tensor, labels: torch.Tensor, k: int, metric: str) -> float:
    """Fraction of samples (n, d) with a same-label sample among their k nearest others."""
    neighbours = _nearest(_without_self(distance_matrix(embeddings, embeddings, metric)), k)
    y = labels.cpu().numpy()
    return float((y[neighbours] == y[:, None]).any(axis=1).mean())


def _off_diagonal_rows(distances: np.ndarray) -> np.ndarray:
    """(n, n) → (n, n − 1): each row without its diagonal entry."""
    n = distances.shape[0]
    return distances[~np.eye(n, dtype=bool)].reshape(n, n - 1)


def spearman_coherence(student: torch.Tensor, teacher: torch.Tensor, metric: str) -> float:
    """Mean over samples i of Spearman's ρ between the student's and the teacher's distances
    from i to every other sample (student (n, p), teacher (n, q)); a constant row counts as ρ = 0."""
    rank_s = rankdata(_off_diagonal_rows(distance_matrix(student, student, metric)), axis=1)
    rank_t = rankdata(_off_diagonal_rows(distance_matrix(teacher, teacher, metric)), axis=1)
    rank_s -= rank_s.mean(axis=1, keepdims=True)
    rank_t -= rank_t.mean(axis=1, keepdims=True)
    denominator = np.sqrt((rank_s**2).sum(axis=1) * (rank_t**2).sum(axis=1))
    numerator = (rank_s * rank_t).sum(axis=1)
    rho = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
    return float(rho.mean())


def neighbour_overlap(student: torch.Tensor, teacher: torch.Tensor, metric: str, k: int = OVERLAP_NEIGHBOURS) -> float:
    """Mean over samples of the fraction of the teacher's k nearest others that are also the student's."""
    near_s = _nearest(_without_self(distance_matrix(student, student, metric)), k)
    near_t = _nearest(_without_self(distance_matrix(teacher, teacher, metric)), k)
    shared = [len(np.intersect1d(a, b)) for a, b in zip(near_s, near_t, strict=True)]
    return float(np.mean(shared) / k)


def evaluate_embeddings(
    train: torch.Tensor,
    train_y: torch.Tensor,
    test: torch.Tensor,
    test_y: torch.Tensor,
    teacher_test: torch.Tensor,
    metric: str,
) -> dict[str, float]:
    """Every measure of ``MEASURES`` for one model.

    Args:
        train: (n_train, p) training-split embeddings (the k-NN gallery); train_y (n_train,) labels.
        test: (n_test, p) held-out embeddings; test_y (n_test,) labels.
        teacher_test: (n_test, q) the teacher's held-out features (coherence reference).
        metric: "euclidean" or "cosine".
    """
    return {
        "knn_accuracy": knn_accuracy(train, train_y, test, test_y, metric),
        "recall_at_1": recall_at_k(test, test_y, 1, metric),
        "recall_at_5": recall_at_k(test, test_y, 5, metric),
        "spearman": spearman_coherence(test, teacher_test, metric),
        "neighbour_overlap": neighbour_overlap(test, teacher_test, metric),
    }
