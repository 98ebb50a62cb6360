"""Command-line pieces the harnesses share: argparse value types, the help format, progress bars."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

import torch

from .objectives import METHODS, check_pc_options, parse_pc_options
from .runtime import check_device

# Fewest samples per batch: a rank needs a reference and two candidates.
MIN_BATCH_SIZE = 3


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to an option's help once, and not for flags or options without a default value
    (their help says what happens when they are not given)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def int_at_least(minimum: int) -> Callable[[str], int]:
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


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text!r}")
    return value


def batch_size(text: str) -> int:
    """An argparse type: a batch size, an int >= 3."""
    try:
        return int_at_least(MIN_BATCH_SIZE)(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error} (a rank needs a reference and two candidates)") from None


def distinct_list(item: Callable[[str], object], what: str) -> Callable[[str], tuple]:
    """An argparse type: distinct comma-separated values, each parsed by ``item`` (``what`` names one)."""

    def parse(text: str) -> tuple:
        try:
            values = tuple(item(part.strip()) for part in text.split(","))
        except (ValueError, argparse.ArgumentTypeError):
            values = ()
        if not values or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"must be distinct comma-separated {what}; got {text!r}")
        return values

    return parse


def widths(text: str) -> tuple[int, ...]:
    """An argparse type: distinct comma-separated ints >= 1."""
    return distinct_list(int_at_least(1), "ints >= 1, e.g. 2,4,8")(text)


def methods(text: str) -> tuple[str, ...]:
    """An argparse type: distinct comma-separated names among ``METHODS``."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [m for m in names if m not in METHODS]
    if not names or unknown or len(set(names)) != len(names):
        why = f" ({', '.join(map(repr, unknown))} unknown)" if unknown else ""
        raise argparse.ArgumentTypeError(
            f"must be distinct comma-separated names among {','.join(METHODS)}; got {text!r}{why}"
        )
    return names


def method_rates(text: str) -> dict[str, float]:
    """An argparse type: ``method=lr,...``, distinct names among ``METHODS`` each with a finite number > 0."""
    rates: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = (piece.strip() for piece in item.partition("="))
        try:
            rate = positive_float(value)
        except argparse.ArgumentTypeError:
            rate = math.nan
        if name not in METHODS or name in rates or not rate > 0:
            raise argparse.ArgumentTypeError(
                f"must be distinct comma-separated method=lr items, methods among {','.join(METHODS)} and "
                f"rates finite numbers > 0; got {text!r}"
            )
        rates[name] = rate
    return rates


def device(text: str) -> str:
    """An argparse type: a device usable here ("cpu", "cuda", "cuda:<index>")."""
    try:
        return str(check_device(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def pc_options(text: str) -> dict[str, object]:
    """An argparse type: ``key=value,...`` keyword arguments of ``PerceptionCoherenceLoss``."""
    try:
        return parse_pc_options(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_methods(parser: argparse.ArgumentParser, default: tuple[str, ...]) -> None:
    """The ``--methods`` argument: distinct distillation methods among ``METHODS``."""
    parser.add_argument(
        "--methods",
        type=methods,
        default=joined(default),
        help=f"comma-separated distillation methods among {','.join(METHODS)}",
    )


def add_pc_options(parser: argparse.ArgumentParser, default: str) -> None:
    """The ``--pc-options`` argument: any keyword of ``PerceptionCoherenceLoss`` for the "pc" method."""
    parser.add_argument(
        "--pc-options",
        type=pc_options,
        default=default or None,
        help="keyword arguments of pc_kernels.PerceptionCoherenceLoss for the pc method, as key=value items "
        "separated by commas, e.g. 'tau=0.1,discrepancy=spearman'; any option of the loss is accepted"
        + ("" if default else " (not given: the library defaults)"),
    )


def check_pc_options_argument(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Set ``args.pc_options`` to {} when not given; ``parser.error`` (exit status 2) naming ``--pc-options``
    unless the loss accepts them on ``args.device``."""
    if args.pc_options is None:
        args.pc_options = {}
    options, device = args.pc_options, args.device
    try:
        check_pc_options(options, torch.device(device))
    except ValueError as error:
        parser.error(f"argument --pc-options: {error}")


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--no-progress`` flag."""
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bars (they are shown only when standard error is a terminal)",
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not turned off, and standard error is a terminal (a redirected run
    gets no escape codes in its log)."""
    return not args.no_progress and sys.stderr.isatty()


def joined(values: tuple[object, ...]) -> str:
    """``values`` as comma-separated text (an argparse default shown in the help)."""
    return ",".join(str(v) for v in values)
