"""Command line: ``python -m distill.quality`` (the benchmark) and ``python -m distill.quality batch-study``,
from the repository root. ``--help`` after either lists its options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import cli
from .batch_study import LR_RULES, BatchStudyConfig, run_batch_study
from .config import MEASURES, QualityConfig
from .corpus import CORPORA
from .experiment import run_benchmark
from .report import terminal_table, write_report, write_study_report

PROG = "python -m distill.quality"
STUDY = "batch-study"
_BENCHMARK = QualityConfig()
_STUDY = BatchStudyConfig(
    QualityConfig(methods=("pc", "pkt"), widths=(32,), seeds=1, sentences=None, output="batch_study_output")
)


def _shared_arguments(parser: argparse.ArgumentParser, defaults: QualityConfig) -> None:
    """The data, methods, seeds, loss options and run settings both commands take."""
    parser.add_argument("--corpus", choices=CORPORA, default=defaults.corpus, help="the sentences distilled on")
    parser.add_argument(
        "--sentences",
        type=cli.int_at_least(10),
        default=defaults.sentences,
        help="sentences drawn from the corpus at random with a fixed seed"
        + ("" if defaults.sentences else " (not given: all of them)"),
    )
    parser.add_argument(
        "--validation", type=cli.int_at_least(1), default=defaults.validation, help="validation sentences"
    )
    parser.add_argument("--test", type=cli.int_at_least(2), default=defaults.test, help="test sentences")
    cli.add_methods(parser, defaults.methods)
    parser.add_argument(
        "--widths", type=cli.widths, default=cli.joined(defaults.widths), help="comma-separated student widths d"
    )
    parser.add_argument("--seeds", type=cli.int_at_least(1), default=defaults.seeds, help="seeds per student")
    parser.add_argument("--seed", type=cli.int_at_least(0), default=defaults.seed, help="base seed")
    parser.add_argument(
        "--method-lr",
        type=cli.method_rates,
        default=None,
        help="fixed learning rates of some methods, as method=lr items separated by commas, e.g. "
        "'pc=0.1,pkt=0.01': the benchmark trains such a method at its rate instead of searching the grid; the "
        "batch-size study takes it as the method's rate at batch 256 instead of --lr (not given: none)",
    )
    cli.add_pc_options(parser, ",".join(f"{k}={v}" for k, v in defaults.pc_options.items()))
    parser.add_argument("--device", type=cli.device, default=defaults.device, help="torch device of the students")
    parser.add_argument(
        "--threads",
        type=cli.int_at_least(0),
        default=defaults.threads or 0,
        help="CPU threads for torch during the run; 0 keeps torch's own setting",
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="folder of the unpacked teacher and its cached embeddings "
        "(not given: $XDG_CACHE_HOME/pc_kernels, or ~/.cache/pc_kernels)",
    )
    parser.add_argument("--output", default=defaults.output, help="folder report.md and report.json are written to")
    cli.add_progress_flag(parser)


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Distil all-MiniLM-L6-v2 into small hashed-n-gram students with perception coherence and "
        f"baseline losses, and measure how well each keeps the teacher's neighbours. '{PROG} {STUDY} --help' "
        "describes the batch-size study. Needs the quality extra: pip install -e '.[quality]'.",
        formatter_class=cli.HelpFormatter,
    )
    _shared_arguments(parser, _BENCHMARK)
    parser.add_argument("--epochs", type=cli.int_at_least(1), default=_BENCHMARK.epochs, help="epochs per student")
    parser.add_argument("--batch-size", type=cli.batch_size, default=_BENCHMARK.batch_size, help="sentences per step")
    parser.add_argument(
        "--lr-grid",
        type=cli.distinct_list(cli.positive_float, "numbers > 0"),
        default=cli.joined(_BENCHMARK.lr_grid),
        help="learning rates tried for every method and width",
    )
    parser.add_argument(
        "--select-by", choices=MEASURES, default=_BENCHMARK.select_by, help="validation measure choosing the rate"
    )
    return parser


def build_study_parser() -> argparse.ArgumentParser:
    """The batch-size study's parser."""
    parser = argparse.ArgumentParser(
        prog=f"{PROG} {STUDY}",
        description="Compare batch sizes at equal epochs, equal steps and equal wall-clock time.",
        formatter_class=cli.HelpFormatter,
    )
    _shared_arguments(parser, _STUDY.base)
    parser.add_argument(
        "--batch-sizes",
        type=cli.distinct_list(cli.batch_size, "batch sizes >= 3"),
        default=cli.joined(_STUDY.batch_sizes),
        help="the batch sizes compared",
    )
    parser.add_argument("--lr", type=cli.positive_float, default=_STUDY.lr, help="learning rate at batch 256")
    parser.add_argument("--lr-rule", choices=tuple(LR_RULES), default=_STUDY.lr_rule, help="how lr scales with batch")
    parser.add_argument("--epochs", type=cli.int_at_least(1), default=_STUDY.epochs, help="equal-epochs budget")
    parser.add_argument("--steps", type=cli.int_at_least(1), default=_STUDY.steps, help="equal-steps budget")
    parser.add_argument(
        "--seconds", type=cli.positive_float, default=_STUDY.seconds, help="equal-wall-clock budget, s of step time"
    )
    return parser


def _base_config(args: argparse.Namespace, **extra: object) -> QualityConfig:
    return QualityConfig(
        corpus=args.corpus,
        sentences=args.sentences,
        validation=args.validation,
        test=args.test,
        methods=args.methods,
        widths=args.widths,
        seeds=args.seeds,
        seed=args.seed,
        method_lr=args.method_lr or {},
        pc_options=args.pc_options,
        device=args.device,
        threads=args.threads or None,
        cache_dir=args.cache_dir,
        output=args.output,
        progress=cli.show_progress(args),
        **extra,  # type: ignore[arg-type]
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, or the batch-size study when the first argument is "batch-study". Returns the
    exit code."""
    argv = sys.argv[1:] if argv is None else argv
    study = bool(argv) and argv[0] == STUDY
    parser = build_study_parser() if study else build_parser()
    args = parser.parse_args(argv[1:] if study else argv)
    cli.check_pc_options_argument(parser, args)
    command = " ".join([PROG, *argv])
    try:
        if study:
            config = BatchStudyConfig(
                _base_config(args),
                batch_sizes=args.batch_sizes,
                lr=args.lr,
                lr_rule=args.lr_rule,
                epochs=args.epochs,
                steps=args.steps,
                seconds=args.seconds,
            )
            written = write_study_report(run_batch_study(config, command), Path(args.output))
        else:
            base = _base_config(
                args, epochs=args.epochs, batch_size=args.batch_size, lr_grid=args.lr_grid, select_by=args.select_by
            )
            result = run_benchmark(base, command)
            print(terminal_table(result))
            written = write_report(result, Path(args.output))
    except (ValueError, ImportError) as error:
        parser.error(str(error))
    print(f"report written to {Path(args.output).resolve()}: {', '.join(p.name for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
