"""The pieces the harnesses under distill/ share: InfoNCE, the pc options, the training budget, provenance,
progress bars."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch

from distill import cli
from distill.losses import InfoNCEProjection
from distill.objectives import METHODS, make_objective, parse_pc_options
from distill.provenance import environment, git_commit
from distill.training import Budget, distillation_step, train
from pc_kernels import PerceptionCoherenceLoss


def test_infonce_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    teacher = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    loss = InfoNCEProjection(3, 5, temperature=0.2).double()
    projected = loss.projector(student).detach()
    total = 0.0
    for i in range(6):
        logits = []
        for j in range(6):
            z, u = projected[i], teacher[j]
            logits.append(float(z @ u) / (float(z.norm()) * float(u.norm())) / 0.2)
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    assert loss(student, teacher).item() == pytest.approx(total / 6, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("tau=0.1", {"tau": 0.1}),
        (
            " tau = 3 , discrepancy=spearman,bins=None,distributed=false",
            dict(tau=3, discrepancy="spearman", bins=None, distributed=False),
        ),
    ],
)
def test_pc_options_are_read_as_keyword_values(text, expected):
    assert parse_pc_options(text) == expected
    assert type(parse_pc_options(text).get("tau")) is type(expected.get("tau"))


@pytest.mark.parametrize("text", ["tau", "=1", "tau=1,tau=2", "1x=2"])
def test_malformed_pc_options_are_refused(text):
    with pytest.raises(ValueError, match="pc options must be distinct key=value items"):
        parse_pc_options(text)


def test_method_rates_are_read_per_method():
    assert cli.method_rates(" pc = 0.1,pkt=1e-2 ") == {"pc": 0.1, "pkt": 0.01}
    assert cli.method_rates("") == {}


@pytest.mark.parametrize("text", ["pc", "pc=", "pc=0", "pc=-1", "pc=nan", "pc=inf", "foo=0.1", "pc=0.1,pc=0.2"])
def test_malformed_method_rates_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"method=lr items, methods among pc,.*got"):
        cli.method_rates(text)


def test_pc_options_reach_the_loss():
    objective = make_objective("pc", 2, 3, {"tau": 0.3, "dissimilarity": "cosine"})
    assert isinstance(objective, PerceptionCoherenceLoss)
    s, t = torch.randn(9, 2, dtype=torch.float64), torch.randn(9, 3, dtype=torch.float64)
    expected = PerceptionCoherenceLoss(tau=0.3, dissimilarity="cosine")(s, t)
    assert torch.equal(objective(s, t), expected)
    for method in METHODS:
        assert torch.isfinite(make_objective(method, 2, 3, {}).double()(s, t))


@pytest.mark.parametrize(
    ("budget", "steps"), [(Budget(epochs=2), 6), (Budget(steps=4), 4), (Budget(epochs=1, steps=10), 3)]
)
def test_training_stops_when_the_budget_is_spent(budget, steps):
    seen: list[torch.Tensor] = []

    def step(index: torch.Tensor) -> torch.Tensor:
        seen.append(index)
        return torch.tensor(float(len(seen)))

    run = train(step, 10, batch_size=3, seed=0, budget=budget, device=torch.device("cpu"), progress=False, desc="")
    assert run.steps == len(seen) == steps
    assert all(len(index) == 3 for index in seen)
    assert run.seconds >= run.seconds_per_step > 0
    first_epoch = torch.cat(seen[:3])
    assert len(set(first_epoch.tolist())) == 9  # one epoch draws each sample at most once


def test_budget_needs_a_limit():
    with pytest.raises(ValueError, match="needs epochs, steps or seconds"):
        Budget()
    with pytest.raises(ValueError, match="steps must be None or > 0"):
        Budget(steps=0)


def test_distillation_step_lowers_the_loss():
    torch.manual_seed(0)
    x, teacher = torch.randn(32, 4), torch.randn(32, 6)
    model = torch.nn.Linear(4, 2)
    objective = make_objective("rkd-distance", 2, 6, {})
    step = distillation_step(lambda i: model(x[i]), objective, teacher, [torch.optim.Adam(model.parameters(), 0.05)])
    index = torch.arange(32)
    first = step(index)
    for _ in range(50):
        last = step(index)
    assert last < first


def test_environment_names_machine_commit_and_versions():
    env = environment(torch.device("cpu"))
    assert env["hardware"] and env["cpu_cores"]
    assert env["versions"]["torch"] == torch.__version__
    assert env["commit"] == git_commit(Path(cli.__file__).parent) != "unknown"
    assert git_commit(Path("/")) == "unknown"


@pytest.mark.parametrize(("tty", "flag", "shown"), [(True, False, True), (False, False, False), (True, True, False)])
def test_progress_bars_only_on_a_terminal(tty, flag, shown, monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: tty)
    assert cli.show_progress(argparse.Namespace(no_progress=flag)) is shown
