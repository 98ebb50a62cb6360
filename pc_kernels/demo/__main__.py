"""Command line: ``python -m pc_kernels.demo`` or ``pc-distill``. ``--help`` lists the options."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from ..options import BACKENDS
from .config import DISTILLATION_METHODS, EVAL_METRICS, DemoConfig, backend_unusable, check_device
from .experiment import run_experiment
from .plots import write_figures
from .report import terminal_table, write_report

_DEFAULTS = DemoConfig()
_QUICK = _DEFAULTS.quick()
# Fewest samples per batch: a rank needs a reference and two candidates.
MIN_BATCH_SIZE = 3


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to an option's help once, and not for flags or options without a default value
    (their help says what happens when they are not given)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}; got {text!r}")
        return value

    return parse


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text!r}")
    return value


def _batch_size(text: str) -> int:
    """An argparse type: a batch size, an int >= 3."""
    try:
        return _int_at_least(MIN_BATCH_SIZE)(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error} (a rank needs a reference and two candidates)") from None


def _widths(text: str) -> tuple[int, ...]:
    """An argparse type: distinct comma-separated ints >= 1."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1 or len(set(widths)) != len(widths):
        raise argparse.ArgumentTypeError(f"must be distinct comma-separated ints >= 1, e.g. 2,4,8; got {text!r}")
    return widths


def _methods(text: str) -> tuple[str, ...]:
    """An argparse type: distinct comma-separated names among ``DISTILLATION_METHODS``."""
    methods = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [m for m in methods if m not in DISTILLATION_METHODS]
    if not methods or unknown or len(set(methods)) != len(methods):
        why = f" ({', '.join(map(repr, unknown))} unknown)" if unknown else ""
        raise argparse.ArgumentTypeError(
            f"must be distinct comma-separated names among {','.join(DISTILLATION_METHODS)}; got {text!r}{why}"
        )
    return methods


def _device(text: str) -> str:
    """An argparse type: a device usable here ("cpu", "cuda", "cuda:<index>")."""
    try:
        return str(check_device(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _existing_folder(text: str) -> str:
    """An argparse type: the path of an existing folder."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"must be an existing folder; got {text!r}")
    return text


def _joined(values: tuple[object, ...]) -> str:
    return ",".join(str(v) for v in values)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``pc-distill`` (``python -m pc_kernels.demo``).

    Values are checked as they are parsed; ``check_arguments`` checks the combinations.
    """
    parser = argparse.ArgumentParser(
        prog="pc-distill",
        description="Distil a label-trained teacher into small students without labels, with perception "
        "coherence and baseline losses, and compare them on held-out data.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--methods",
        type=_methods,
        default=_joined(_DEFAULTS.methods),
        help=f"comma-separated distillation methods among {','.join(DISTILLATION_METHODS)}",
    )
    parser.add_argument(
        "--widths",
        type=_widths,
        default=_joined(_DEFAULTS.widths),
        help="comma-separated student embedding widths, each >= 1",
    )
    parser.add_argument(
        "--seeds",
        type=_int_at_least(1),
        default=_DEFAULTS.seeds,
        help="student seeds per method and width, >= 1 (with 1 no spread is known: no verdicts)",
    )
    parser.add_argument(
        "--seed", type=_int_at_least(0), default=_DEFAULTS.seed, help="base seed, >= 0 (also the teacher's)"
    )
    parser.add_argument(
        "--epochs",
        type=_int_at_least(1),
        default=_DEFAULTS.student_epochs,
        help="passes over the training split per student, >= 1",
    )
    parser.add_argument(
        "--teacher-epochs",
        type=_int_at_least(1),
        default=_DEFAULTS.teacher_epochs,
        help="passes over the training split of the label-supervised teacher, >= 1",
    )
    parser.add_argument(
        "--batch-size",
        type=_batch_size,
        default=_DEFAULTS.batch_size,
        help=f"student batch size, >= {MIN_BATCH_SIZE} and at most the training split",
    )
    parser.add_argument("--lr", type=_positive_float, default=_DEFAULTS.lr, help="student learning rate (Adam), > 0")
    parser.add_argument(
        "--tau", type=_positive_float, default=_DEFAULTS.tau, help="perception coherence temperature, > 0"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=_DEFAULTS.backend,
        help="perception coherence backend (triton: CUDA devices with triton installed)",
    )
    parser.add_argument(
        "--device", type=_device, default=_DEFAULTS.device, help="torch device: cpu, cuda or cuda:<index>"
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
        type=_int_at_least(1),
        default=_DEFAULTS.image_size,
        help="side in pixels --image-folder images are resized to (grayscale)",
    )
    parser.add_argument(
        "--eval-metric",
        choices=EVAL_METRICS,
        default=_DEFAULTS.eval_metric,
        help="distance every evaluation measure uses",
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
        type=_int_at_least(0),
        default=_DEFAULTS.threads,
        help="CPU threads for torch; 0 keeps torch's own setting",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {_QUICK.seeds} seed, widths {_joined(_QUICK.widths)}, {_QUICK.student_epochs} student "
        f"and {_QUICK.teacher_epochs} teacher epochs, batch size {_QUICK.batch_size} "
        "(options given explicitly win)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject combinations of options that cannot run here with ``parser.error`` (exit status 2)."""
    unusable = backend_unusable(args.backend, torch.device(args.device))
    if unusable:
        parser.error(f"argument --backend: {unusable}")


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
        parser.set_defaults(
            seeds=_QUICK.seeds,
            widths=_joined(_QUICK.widths),
            epochs=_QUICK.student_epochs,
            teacher_epochs=_QUICK.teacher_epochs,
            batch_size=_QUICK.batch_size,
        )
        args = parser.parse_args(argv)
    check_arguments(parser, args)
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
