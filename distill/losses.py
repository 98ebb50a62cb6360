"""Baseline distillation losses the harness compares perception coherence with.

Each takes student features s (n, p) and teacher features t (n, q) of one batch, n >= 3,
and returns a scalar to minimise. None of them needs labels. The formulas are written here
from the papers cited in each docstring (our own code, our own reduction choices, stated).
The two with a learned projection (``FitNetHint``, ``InfoNCEProjection``) are modules whose
parameters are trained with the student and discarded afterwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# RKD-angle builds (anchors × n × n) angle tensors; anchors are capped so that they stay
# below this many entries (every sample of the batch is an anchor up to n = 2 ** (26/3) ≈ 406).
ANGLE_TRIPLET_BUDGET = 2**26
# Keeps PKT's logarithm finite (the value used by Passalis & Tefas).
PKT_EPS = 1e-7


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """(n, d) → (n, n) Euclidean distances, zero diagonal; zero distances get a zero gradient.

    Uses ||x_i||² + ||x_j||² − 2<x_i, x_j> so that no (n, n, d) tensor is built.
    """
    sq_norms = (x * x).sum(dim=1)
    squared = (sq_norms[:, None] + sq_norms[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
    positive = (squared > 0) & ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    safe = torch.where(positive, squared, torch.ones_like(squared))
    return torch.where(positive, safe.sqrt(), torch.zeros_like(squared))


def _off_diagonal(n: int, device: torch.device) -> torch.Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD distance loss: Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019.

    Matches pairwise distances, each feature set divided by its mean pairwise distance.
    Reduction: the mean over ordered pairs i != j.
    """
    # ψ(x_i, x_j) = ||x_i − x_j|| / μ,  μ = mean_{i≠j} ||x_i − x_j||
    # L = mean_{i≠j} huber(ψ(s_i, s_j) − ψ(t_i, t_j)),  huber = smooth L1 with δ = 1
    off = _off_diagonal(student.shape[0], student.device)

    def potential(x: torch.Tensor) -> torch.Tensor:
        d = pairwise_distances(x)[off]
        return d / d.mean().clamp_min(1e-12)

    return F.smooth_l1_loss(potential(student), potential(teacher))


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD angle loss: Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019.

    Matches the cosine of the angle that every pair (b, c) makes at an anchor a. Anchors are
    the first ``m`` rows of the (shuffled) batch, ``m = min(n, ANGLE_TRIPLET_BUDGET // n²)``,
    so its (m, n, n) angle tensors stay within the budget; for n <= 406 every sample is an
    anchor, beyond that a random subset of the batch (an unbiased estimate of the full loss).
    Reduction: the mean over triplets with b != a and c != a.
    """
    # ψ(x_a, x_b, x_c) = <e_ab, e_ac>,  e_ab = (x_b − x_a) / ||x_b − x_a||
    # L = mean_{a; b,c ≠ a} huber(ψ(s_a, s_b, s_c) − ψ(t_a, t_b, t_c))
    n = student.shape[0]
    anchors = min(n, max(1, ANGLE_TRIPLET_BUDGET // (n * n)))

    def potential(x: torch.Tensor) -> torch.Tensor:
        # e_aa normalises to the zero vector, so every triplet with b = a or c = a has ψ = 0 in
        # both feature sets and adds nothing to the sum (cheaper than masking n³ entries).
        directions = F.normalize(x[None, :, :] - x[:anchors, None, :], dim=2)  # (m, n, d): e_ab
        return torch.bmm(directions, directions.transpose(1, 2))

    total = F.smooth_l1_loss(potential(student), potential(teacher), reduction="sum")
    return total / (anchors * (n - 1) ** 2)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """PKT: Passalis, Tefas, "Learning Deep Representations with Probabilistic Knowledge
    Transfer", ECCV 2018.

    Matches the conditional probability distributions a cosine-similarity kernel induces
    over each sample's neighbours, with the KL divergence.
    Reduction: the mean over reference samples i of KL(P^T_i· || P^S_i·).
    """
    # K_ij = (1 + cos(x_i, x_j)) / 2 for j != i,  P_ij = K_ij / Σ_{k≠i} K_ik
    # L = mean_i Σ_{j≠i} P^T_ij · log((P^T_ij + ε) / (P^S_ij + ε)),  ε = 1e-7
    off = _off_diagonal(student.shape[0], student.device)

    def conditional(x: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(x, dim=1, eps=1e-8)
        kernel = (1.0 + unit @ unit.T) / 2.0 * off
        return kernel / kernel.sum(dim=1, keepdim=True)

    p_student, p_teacher = conditional(student), conditional(teacher)
    kl = p_teacher * torch.log((p_teacher + PKT_EPS) / (p_student + PKT_EPS))
    return kl.sum(dim=1).mean()


def similarity_preserving_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """SP: Tung, Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019.

    Matches the batch's Gram matrices after L2-normalising each of their rows.
    Reduction: the squared Frobenius distance divided by n², as in the paper.
    """

    # G = X Xᵀ,  G~_i· = G_i· / ||G_i·||_2,  L = ||G~_S − G~_T||_F² / n²
    def normalized_gram(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x @ x.T, dim=1)

    n = student.shape[0]
    return (normalized_gram(student) - normalized_gram(teacher)).pow(2).sum() / (n * n)


class FitNetHint(nn.Module):
    """FitNet-style hint regression: Romero, Ballas, Kahou, Chassang, Gatta, Bengio,
    "FitNets: Hints for Thin Deep Nets", ICLR 2015.

    A learned linear projector ``r`` maps the (n, student_dim) student features to the
    teacher's dimension; it is trained jointly with the student and discarded afterwards.
    Reduction: the mean over the n × teacher_dim entries.
    """

    # L = mean_{i, c} (r(s_i)_c − t_ic)²,  r(s) = W s + b

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.projector = nn.Linear(student_dim, teacher_dim)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The hint loss of student (n, student_dim) and teacher (n, teacher_dim) features: a scalar."""
        return F.mse_loss(self.projector(student), teacher)


class InfoNCEProjection(nn.Module):
    """Contrastive distillation with in-batch negatives: the InfoNCE loss of van den Oord, Li, Vinyals,
    "Representation Learning with Contrastive Predictive Coding", 2018, used between a student and a teacher
    as in Tian, Krishnan, Isola, "Contrastive Representation Distillation", ICLR 2020 (their negatives come
    from a memory bank; here they are the other samples of the batch).

    A learned linear projector ``r`` maps the student features to the teacher's dimension; each projected
    student feature must pick its own teacher feature among the batch's by cosine similarity.
    Reduction: the mean over the n samples.
    """

    # z_i = r(s_i) / ||r(s_i)||,  u_j = t_j / ||t_j||,  logits_ij = <z_i, u_j> / T
    # L = mean_i −log softmax_j(logits_i·)_i,  T = ``temperature`` (default 0.1)

    def __init__(self, student_dim: int, teacher_dim: int, temperature: float = 0.1) -> None:
        super().__init__()
        self.projector = nn.Linear(student_dim, teacher_dim)
        self.temperature = temperature

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The InfoNCE loss of student (n, student_dim) and teacher (n, teacher_dim) features: a scalar."""
        projected = F.normalize(self.projector(student), dim=1, eps=1e-8)
        logits = projected @ F.normalize(teacher, dim=1, eps=1e-8).T / self.temperature
        return F.cross_entropy(logits, torch.arange(student.shape[0], device=student.device))
