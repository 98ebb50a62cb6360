"""Accuracy of algorithm="binned" against the dense algorithm, in float32 and float64.

    python -m benchmarks.binned_accuracy [--n 1024] [--dim 64] [--out benchmarks/results/binned_accuracy.md]

For Gaussian and clustered features (student (n, p) and a noisy linear map of it as teacher, q = p)
and τ from 0.01 to 1, compares the binned torch backend, run on float32 and on float64 inputs,
with the dense torch backend on float64 inputs: the largest error of the student's normalized soft
ranks, the relative error of the loss, and the cosine similarity and relative L2 error of the
student's gradient. Writes a markdown table and prints it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import pc_kernels
from pc_kernels.binned_soft_ranks import RANK_TOLERANCE

from .records import device_name

TAUS = (0.01, 0.03, 0.1, 0.3, 1.0)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "binned_accuracy.md"


def features(kind: str, n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 student (n, dim) of one family, and a teacher that is a noisy linear map of it."""
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        student = torch.randn(n, dim, generator=g, dtype=torch.float64)
    else:
        centres = 4.0 * torch.randn(10, dim, generator=g, dtype=torch.float64)
        student = centres[torch.randint(0, 10, (n,), generator=g)] + torch.randn(n, dim, generator=g, dtype=torch.float64)
    teacher = student @ torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim**0.5
    return student, teacher + 0.5 * torch.randn(n, dim, generator=g, dtype=torch.float64)


def _loss_and_gradient(student: torch.Tensor, teacher: torch.Tensor, **options) -> tuple[float, torch.Tensor]:
    x = student.detach().clone().requires_grad_()
    loss = pc_kernels.perception_coherence_loss(x, teacher, backend="torch", **options)
    loss.backward()
    return loss.item(), x.grad.double()


def measure(kind: str, n: int, dim: int, tau: float) -> list[dict[str, object]]:
    """One row per input dtype of binned-vs-dense errors for one feature family and τ."""
    student, teacher = features(kind, n, dim, seed=0)
    dense_ranks = pc_kernels.soft_ranks(student, tau=tau, backend="torch")
    dense_loss, dense_grad = _loss_and_gradient(student, teacher, tau=tau)
    rows = []
    for dtype in (torch.float32, torch.float64):
        s, t = student.to(dtype), teacher.to(dtype)
        ranks = pc_kernels.soft_ranks(s, tau=tau, backend="torch", algorithm="binned").double()
        loss, grad = _loss_and_gradient(s, t, tau=tau, algorithm="binned")
        rows.append(
            dict(
                features=kind,
                tau=tau,
                dtype=str(dtype).removeprefix("torch."),
                rank_error=(ranks - dense_ranks).abs().max().item(),
                loss_error=abs(loss - dense_loss) / abs(dense_loss),
                cosine=torch.nn.functional.cosine_similarity(grad.flatten(), dense_grad.flatten(), dim=0).item(),
                gradient_error=((grad - dense_grad).norm() / dense_grad.norm()).item(),
            )
        )
    return rows


def markdown(rows: list[dict[str, object]], n: int, dim: int) -> str:
    lines = [
        f"Binned vs dense (dense: torch backend, float64 inputs), n = {n}, p = q = {dim}, "
        f"automatic grid (bound on the soft rank error: {RANK_TOLERANCE:g}); {device_name('cpu')}, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| features | τ | inputs | max soft-rank error | loss rel. error | gradient cosine | gradient rel. L2 error |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['features']} | {r['tau']} | {r['dtype']} | {r['rank_error']:.2e} | {r['loss_error']:.2e} "
            f"| {r['cosine']:.8f} | {r['gradient_error']:.2e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.binned_accuracy", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1024, help="batch size (default 1024)")
    parser.add_argument("--dim", type=int, default=64, help="feature size p = q (default 64)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"markdown file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.n < 3 or args.dim < 1:
        raise SystemExit(f"--n must be >= 3 and --dim >= 1; got n={args.n}, dim={args.dim}")
    rows = [row for kind in ("gaussian", "clusters") for tau in TAUS for row in measure(kind, args.n, args.dim, tau)]
    text = markdown(rows, args.n, args.dim)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
