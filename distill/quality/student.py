"""The student: hashed word unigrams and bigrams → a mean embedding bag → a two-layer MLP.

A sentence is lower-cased and cut into words (``\\w+``); each word and each pair of adjacent words is
hashed (CRC-32, stable across processes, unlike Python's ``hash``) into one of ``buckets`` rows of an
``nn.EmbeddingBag`` in mean mode, whose output goes through Linear(128, 256), ReLU, Linear(256, d). The
table is sparse: it is trained with ``torch.optim.SparseAdam`` and the rest with ``torch.optim.Adam``.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

BUCKETS = 2**18
BAG_DIM = 128
HIDDEN = 256
_WORD = re.compile(r"\w+")


def hashed_ngrams(sentence: str, buckets: int) -> list[int]:
    """The bucket of each word unigram and bigram of ``sentence`` (lower-cased), in order."""
    words = _WORD.findall(sentence.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    return [zlib.crc32(gram.encode("utf-8")) % buckets for gram in grams]


@dataclass(frozen=True)
class HashedBags:
    """The hashed n-grams of n sentences in compressed rows: sentence i's buckets are
    ``ids[starts[i]:starts[i + 1]]`` (int64 arrays; a sentence without words has an empty bag)."""

    ids: np.ndarray
    starts: np.ndarray

    @classmethod
    def of(cls, sentences: list[str], buckets: int = BUCKETS) -> HashedBags:
        """The bags of ``sentences``, hashed into ``buckets`` rows."""
        bags = [hashed_ngrams(sentence, buckets) for sentence in sentences]
        starts = np.zeros(len(bags) + 1, dtype=np.int64)
        np.cumsum([len(bag) for bag in bags], out=starts[1:])
        ids = np.fromiter((i for bag in bags for i in bag), dtype=np.int64, count=int(starts[-1]))
        return cls(ids, starts)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, offsets)`` of the sentences ``index`` (k,), the input of ``nn.EmbeddingBag``."""
        rows = index.cpu().numpy()
        lengths = self.starts[rows + 1] - self.starts[rows]
        offsets = np.zeros(len(rows), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        ids = np.concatenate([self.ids[self.starts[r] : self.starts[r + 1]] for r in rows])
        return torch.from_numpy(ids).to(index.device), torch.from_numpy(offsets).to(index.device)


# Adam's ε far below every loss's gradients, so that no method is held back by the overall scale of its
# loss: with the default 1e-8, PKT's mean-reduced table gradients (median 3e-10 at the start) fall under ε
# and its updates shrink by orders of magnitude (docs/why_pc_trails.md, finding 4).
ADAM_EPS = 1e-12


class BagStudent(nn.Module):
    """(ids, offsets) of a batch of bags → (k, width) embeddings."""

    def __init__(self, width: int, buckets: int = BUCKETS) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(buckets, BAG_DIM, mode="mean", sparse=True)
        self.mlp = nn.Sequential(nn.Linear(BAG_DIM, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, width))

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The embeddings (k, width) of k bags given as ``nn.EmbeddingBag`` input."""
        return self.mlp(self.bag(ids, offsets))

    def optimizers(self, extra: list[nn.Parameter], lr: float) -> list[torch.optim.Optimizer]:
        """SparseAdam for the table; Adam for the MLP and ``extra`` (an objective's projector), both at ``lr``
        and with ε = ``ADAM_EPS``."""
        return [
            torch.optim.SparseAdam(list(self.bag.parameters()), lr=lr, eps=ADAM_EPS),
            torch.optim.Adam([*self.mlp.parameters(), *extra], lr=lr, eps=ADAM_EPS),
        ]


@torch.no_grad()
def embed_all(model: BagStudent, bags: HashedBags, rows: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The embeddings (len(rows), width) of the sentences ``rows``, in chunks, on the CPU."""
    return torch.cat([model(*bags.batch(rows[i : i + chunk])).cpu() for i in range(0, len(rows), chunk)])
