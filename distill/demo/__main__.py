"""Command line: ``python -m distill.demo`` from the repository root. ``--help`` lists the options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import cli
from .config import METRICS, DemoConfig
from .experiment import run_experiment
from .plots import write_figures
from .report import terminal_table, write_report

_DEFAULTS = DemoConfig()
_QUICK = _DEFAULTS.quick()
PROG = "python -m distill.demo"


def _existing_folder(text: str) -> str:
    """An argparse type: the path of an existing folder."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"must be an existing folder; got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m distill.demo``.

    Values are checked as they are parsed; ``main`` checks the combinations.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Distil a label-trained teacher into small students without labels, with perception "
        "coherence and baseline losses, and compare them on held-out data.",
        formatter_class=cli.HelpFormatter,
    )
    cli.add_methods(parser, _DEFAULTS.methods)
    parser.add_argument(
        "--widths",
        type=cli.widths,
        default=cli.joined(_DEFAULTS.widths),
        help="comma-separated student embedding widths, each >= 1",
    )
    parser.add_argument(
        "--seeds",
        type=cli.int_at_least(1),
        default=_DEFAULTS.seeds,
        help="student seeds per method and width, >= 1 (with 1 no spread is known: no verdicts)",
    )
    parser.add_argument(
        "--seed", type=cli.int_at_least(0), default=_DEFAULTS.seed, help="base seed, >= 0 (also the teacher's)"
    )
    parser.add_argument(
        "--epochs",
        type=cli.int_at_least(1),
        default=_DEFAULTS.student_epochs,
        help="passes over the training split per student, >= 1",
    )
    parser.add_argument(
        "--teacher-epochs",
        type=cli.int_at_least(1),
        default=_DEFAULTS.teacher_epochs,
        help="passes over the training split of the label-supervised teacher, >= 1",
    )
    parser.add_argument(
        "--batch-size",
        type=cli.batch_size,
        default=_DEFAULTS.batch_size,
        help=f"student batch size, >= {cli.MIN_BATCH_SIZE} and at most the training split",
    )
    parser.add_argument("--lr", type=cli.positive_float, default=_DEFAULTS.lr, help="student learning rate (Adam), > 0")
    cli.add_pc_options(parser, "")
    parser.add_argument(
        "--device", type=cli.device, default=_DEFAULTS.device, help="torch device: cpu, cuda or cuda:<index>"
    )
    parser.add_argument(
        "--image-folder",
        type=_existing_folder,
        default=None,
        help="local torchvision ImageFolder tree (one sub-folder per class) to use instead of scikit-learn's "
        "bundled digits, the default; needs torchvision",
    )
    parser.add_argument(
        "--image-size",
        type=cli.int_at_least(1),
        default=_DEFAULTS.image_size,
        help="side in pixels --image-folder images are resized to (grayscale)",
    )
    parser.add_argument(
        "--eval-metric", choices=METRICS, default=_DEFAULTS.eval_metric, help="distance every evaluation measure uses"
    )
    parser.add_argument(
        "--output", default=_DEFAULTS.output, help="folder the report (report.md, report.json, figures) is written to"
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="teacher cache folder (default: $XDG_CACHE_HOME/pc_kernels, or ~/.cache/pc_kernels)",
    )
    parser.add_argument(
        "--threads",
        type=cli.int_at_least(0),
        default=_DEFAULTS.threads,
        help="CPU threads for torch; 0 keeps torch's own setting",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {_QUICK.seeds} seed, widths {cli.joined(_QUICK.widths)}, {_QUICK.student_epochs} student "
        f"and {_QUICK.teacher_epochs} teacher epochs, batch size {_QUICK.batch_size} "
        "(options given explicitly win)",
    )
    cli.add_progress_flag(parser)
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
        pc_options=args.pc_options,
        device=args.device,
        image_folder=args.image_folder,
        image_size=args.image_size,
        eval_metric=args.eval_metric,
        output=args.output,
        cache_dir=args.cache_dir,
        progress=cli.show_progress(args),
        threads=args.threads or None,
    )
    return config.validated()


def main(argv: list[str] | None = None) -> int:
    """Run the harness: print the results table and write the report folder. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(
            seeds=_QUICK.seeds,
            widths=cli.joined(_QUICK.widths),
            epochs=_QUICK.student_epochs,
            teacher_epochs=_QUICK.teacher_epochs,
            batch_size=_QUICK.batch_size,
        )
        args = parser.parse_args(argv)
    cli.check_pc_options_argument(parser, args)
    command = " ".join([PROG, *(sys.argv[1:] if argv is None else argv)])
    try:
        config = config_from_args(args)
        result = run_experiment(config, command)
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    print(terminal_table(result))
    folder = Path(config.output)
    figures = write_figures(result, folder)
    written = write_report(result, folder, figures)
    how = "loaded from" if result.teacher["loaded_from_cache"] else "trained and cached in"
    print(f"\nteacher: {how} {result.teacher['cache_file']}")
    print(f"report written to {folder.resolve()}: {', '.join(p.name for p in written)}, {', '.join(figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
