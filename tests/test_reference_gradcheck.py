"""torch.autograd.gradcheck through the reference backend, float64, every option combination (the
fast paths' gradchecks are in test_paths_agree.py); which inputs get a gradient, on every path."""

import pytest
import torch

import pc_kernels
from helpers import DEVICE, OPTION_GRID, REDUCTIONS, option_id, random_features, usable_paths


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", OPTION_GRID, ids=option_id)
def test_gradcheck_student_and_teacher(options, reduction):
    student = random_features(5, 3, seed=11).requires_grad_()
    # Hard teacher ranks carry no gradient, so the teacher is only checked with soft ranks.
    teacher = random_features(5, 4, seed=12).requires_grad_(options["teacher_ranks"] == "soft")

    def loss(s, t):
        return pc_kernels.perception_coherence_loss(s, t, tau=0.5, reduction=reduction, backend="reference", **options)

    assert torch.autograd.gradcheck(loss, (student, teacher), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("path", usable_paths(), ids=str)
def test_hard_teacher_gets_no_gradient(path):
    student = random_features(6, 3, seed=13).to(DEVICE).requires_grad_()
    teacher = random_features(6, 3, seed=14).to(DEVICE).requires_grad_()
    pc_kernels.perception_coherence_loss(student, teacher, teacher_ranks="hard", **path.options).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


@pytest.mark.parametrize("path", usable_paths(), ids=str)
def test_soft_teacher_gets_a_gradient(path):
    student = random_features(6, 3, seed=15).to(DEVICE).requires_grad_()
    teacher = random_features(6, 3, seed=16).to(DEVICE).requires_grad_()
    pc_kernels.perception_coherence_loss(student, teacher, **path.options).backward()
    assert teacher.grad is not None and teacher.grad.abs().sum() > 0
    assert student.grad is not None and student.grad.abs().sum() > 0


@pytest.mark.parametrize("path", usable_paths(), ids=str)
def test_a_teacher_without_requires_grad_is_left_alone(path):
    student = random_features(6, 3, seed=17).to(DEVICE).requires_grad_()
    teacher = random_features(6, 3, seed=18).to(DEVICE)
    pc_kernels.perception_coherence_loss(student, teacher, **path.options).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
