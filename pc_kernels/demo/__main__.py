"""Command line: ``python -m pc_kernels.demo`` or ``pc-distill``. ``--help`` lists the options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..options import BACKENDS
from .config import DISTILLATION_METHODS, EVAL_METRICS, DemoConfig
from .experiment import run_experiment
from .plots import write_figures
from .report import terminal_table, write_report

_DEFAULTS = DemoConfig()


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, e.g. 2,4,8; got {text!r}") from error


def _joined(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values)


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``pc-distill`` (``python -m pc_kernels.demo``)."""
    parser = argparse.ArgumentParser(
        prog="pc-distill",
        description="Distil a label-trained teacher into small students without labels, with perception "
        "coherence and baseline losses, and compare them on held-out data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--methods",
        type=_name_list,
        default=",".join(_DEFAULTS.methods),
        help=f"comma-separated methods among {','.join(DISTILLATION_METHODS)}",
    )
    parser.add_argument("--widths", type=_int_list, default=_joined(_DEFAULTS.widths), help="student embedding widths")
    parser.add_argument("--seeds", type=int, default=_DEFAULTS.seeds, help="student seeds per method and width")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="base seed (also the teacher's)")
    parser.add_argument("--epochs", type=int, default=_DEFAULTS.student_epochs, help="student epochs")
    parser.add_argument("--teacher-epochs", type=int, default=_DEFAULTS.teacher_epochs)
    parser.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="student batch size, >= 3")
    parser.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="student learning rate (Adam)")
    parser.add_argument("--tau", type=float, default=_DEFAULTS.tau, help="perception coherence temperature")
    parser.add_argument("--backend", choices=BACKENDS, default=_DEFAULTS.backend, help="perception coherence backend")
    parser.add_argument("--device", default=_DEFAULTS.device, help="cpu, cuda or cuda:<index>")
    parser.add_argument(
        "--image-folder",
        default=None,
        help="local torchvision ImageFolder tree to use instead of the digits (needs torchvision)",
    )
    parser.add_argument(
        "--image-size", type=int, default=_DEFAULTS.image_size, help="side images of --image-folder are resized to"
    )
    parser.add_argument("--eval-metric", choices=EVAL_METRICS, default=_DEFAULTS.eval_metric)
    parser.add_argument("--output", default=_DEFAULTS.output, help="report folder")
    parser.add_argument("--cache-dir", default=None, help="teacher cache folder (default ~/.cache/pc_kernels)")
    parser.add_argument(
        "--threads", type=int, default=_DEFAULTS.threads, help="CPU threads for torch; 0 keeps torch's own setting"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run defaults: one seed, widths 2 and 8, 5 epochs, batch 64 (explicit options win)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    """The validated ``DemoConfig`` for parsed command-line arguments."""
    config = DemoConfig(
        methods=args.methods,
        widths=args.widths,
        seeds=args.seeds,
        seed=args.seed,
        student_epochs=args.epochs,
        teacher_epochs=args.teacher_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        tau=args.tau,
        backend=args.backend,
        device=args.device,
        image_folder=args.image_folder,
        image_size=args.image_size,
        eval_metric=args.eval_metric,
        output=args.output,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        threads=args.threads or None,
    )
    return config.validated()


def main(argv: list[str] | None = None) -> int:
    """Run the harness: print the results table and write the report folder. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        quick = _DEFAULTS.quick()
        parser.set_defaults(
            seeds=quick.seeds,
            widths=_joined(quick.widths),
            epochs=quick.student_epochs,
            teacher_epochs=quick.teacher_epochs,
            batch_size=quick.batch_size,
        )
        args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        result = run_experiment(config)
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    print(terminal_table(result))
    folder = Path(config.output)
    figures = write_figures(result, folder)
    command = " ".join(["python -m pc_kernels.demo", *(sys.argv[1:] if argv is None else argv)])
    written = write_report(result, folder, figures, command)
    how = "loaded from" if result.teacher["loaded_from_cache"] else "trained and cached in"
    print(f"\nteacher: {how} {result.teacher['cache_file']}")
    print(f"report written to {folder.resolve()}: {', '.join(p.name for p in written)}, {', '.join(figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
