"""``python -m benchmarks.sentence_transformers_cache``: what ``mini_batch_size`` saves and costs.

One training step (forward, loss, backward) of ``PerceptionCoherenceDistillLoss`` on a small BERT built
offline (the sentence-transformers extra), on CPU, for each ``mini_batch_size``: the resident peak above
what the process held before the step, and the median seconds of timed steps. Each setting runs in a
fresh process (malloc told to return freed buffers, as ``python -m benchmarks sweep`` does) after one
warm-up step. The table goes to stdout, and with ``--out`` to a file headed by machine, commit and command.
Times are only meaningful on an otherwise idle machine (the header records the load average); the resident
peak does not depend on the load. ``--repeats 0`` measures memory only.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from . import harness
from .reports import format_bytes

# Sentences are drawn from these words; the tokenizer knows them and BERT's special tokens.
WORDS = (
    ["the", "a", "on", "under", "over", "near", "big", "small", "quick", "slow", "old", "young"]
    + ["cat", "dog", "bird", "fish", "mat", "tree", "river", "sky", "red", "blue", "green"]
    + ["sat", "ran", "flew", "swam"]
)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _RELAXED_MMAP = -1, -3, 64 * 1024  # glibc mallopt parameters


def write_bert(folder: Path, width: int, layers: int, seed: int) -> None:
    """A randomly initialized BERT of ``width`` and ``layers`` with a word-level tokenizer of WORDS, saved."""
    import transformers

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + WORDS)}
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * width,
        max_position_embeddings=128,
    )
    transformers.BertModel(config).save_pretrained(folder)
    transformers.BertTokenizerFast(vocab=vocab).save_pretrained(folder)


def load_sentence_transformer(folder: Path, dropout: float = 0.1, dtype: torch.dtype = torch.float32) -> Any:
    """The checkpoint of ``write_bert`` as a SentenceTransformer (Transformer + mean Pooling) in train mode."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    dropouts = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    transformer = Transformer(str(folder), config_kwargs=dropouts)
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")])
    return model.to(device="cpu", dtype=dtype).train()


def _measure_one(setting: dict) -> dict:
    """Warm-up step, one step for the resident peak, then ``repeats`` timed steps, in this process."""
    from pc_kernels.sentence_transformers import PerceptionCoherenceDistillLoss

    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to relax
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, _RELAXED_MMAP)
        ctypes.CDLL(None).mallopt(_M_TRIM_THRESHOLD, 2 * _RELAXED_MMAP)
    torch.manual_seed(0)
    student = load_sentence_transformer(Path(setting["folder"]))
    words = torch.randint(len(WORDS), (setting["n"], setting["length"])).tolist()
    features = [student.preprocess([" ".join(WORDS[w] for w in row) for row in words])]
    labels = torch.randn(setting["n"], setting["teacher_width"])
    loss = PerceptionCoherenceDistillLoss(student, mini_batch_size=setting["mini_batch_size"], **setting["options"])

    def step() -> None:
        student.zero_grad(set_to_none=True)
        loss(features, labels).backward()

    harness.wall_seconds(step, "cpu")
    peak, _ = harness.peak_bytes(step, "cpu")
    seconds = [harness.wall_seconds(step, "cpu") for _ in range(setting["repeats"])]
    return {"peak_bytes": peak, "median_s": statistics.median(seconds) if seconds else None}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=512, help="sentences per batch (default 512)")
    parser.add_argument("--length", type=int, default=48, help="words per sentence (default 48)")
    parser.add_argument("--width", type=int, default=128, help="student width (default 128)")
    parser.add_argument("--layers", type=int, default=4, help="student layers (default 4)")
    parser.add_argument("--teacher-width", type=int, default=384, help="label width (default 384)")
    parser.add_argument("--mini-batch-sizes", default="none,128,32", help="comma-separated (default none,128,32)")
    parser.add_argument("--algorithm", default="dense", help="the loss's algorithm option (default dense)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per setting (default 3; 0: memory only)")
    parser.add_argument("--out", type=Path, help="also write the table, with its header, to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a setting as JSON: measure it in this process
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.one:
        print(json.dumps(_measure_one(json.loads(args.one))))
        return
    header = [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; commit "
        f"{harness.source_commit()}; {harness.device_name('cpu')}, {torch.get_num_threads()} torch threads; "
        f"load average {os.getloadavg()[0]:.1f} at the start",
        f"- command: `{' '.join(['python -m benchmarks.sentence_transformers_cache', *(argv or sys.argv[1:])])}`",
        f"- student: BERT, {args.layers} layers of width {args.width}, mean pooling, dropout 0.1; "
        f"n = {args.n} sentences of {args.length} words; labels of width {args.teacher_width}; "
        f"algorithm={args.algorithm!r}",
        "",
        "| mini_batch_size | peak above the step's start | seconds per step (median) |",
        "|---|---|---|",
    ]
    print("\n".join(header), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        write_bert(Path(folder), args.width, args.layers, seed=0)
        for text in args.mini_batch_sizes.split(","):
            size = None if text == "none" else int(text)
            setting = dict(
                folder=folder,
                n=args.n,
                length=args.length,
                teacher_width=args.teacher_width,
                mini_batch_size=size,
                options={"algorithm": args.algorithm},
                repeats=args.repeats,
            )
            command = [sys.executable, "-m", "benchmarks.sentence_transformers_cache", "--one", json.dumps(setting)]
            done = subprocess.run(command, cwd=harness.REPO, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            seconds = "not timed" if result["median_s"] is None else f"{result['median_s']:.3f}"
            rows.append(f"| {text} | {format_bytes(result['peak_bytes'])} | {seconds} |")
            print(rows[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join([*header, *rows]) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
