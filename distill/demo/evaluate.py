"""The digits measures of one model, on the held-out split, from embeddings only (``distill.metrics``).

Task measures (labels are used here, never in distillation):
    knn_accuracy       5-NN majority vote, training-split embeddings as the labelled gallery
    recall_at_1/5      a held-out query scores 1 if one of its K nearest other held-out samples
                       has its label (the usual retrieval Recall@K)
Label-free coherence with the teacher:
    spearman           mean per-sample Spearman correlation of the distances to the other held-out samples
    neighbour_overlap  recall@10 of the teacher's 10 nearest other held-out samples
"""

from __future__ import annotations

import torch

from ..metrics import knn_accuracy, label_recall_at_k, neighbour_recall, spearman_coherence

MEASURES = ("knn_accuracy", "recall_at_1", "recall_at_5", "spearman", "neighbour_overlap")
KNN_NEIGHBOURS = 5
OVERLAP_NEIGHBOURS = 10


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
        "knn_accuracy": knn_accuracy(train, train_y, test, test_y, metric, KNN_NEIGHBOURS),
        "recall_at_1": label_recall_at_k(test, test_y, 1, metric),
        "recall_at_5": label_recall_at_k(test, test_y, 5, metric),
        "spearman": spearman_coherence(test, teacher_test, metric),
        "neighbour_overlap": neighbour_recall(test, teacher_test, OVERLAP_NEIGHBOURS, metric),
    }
