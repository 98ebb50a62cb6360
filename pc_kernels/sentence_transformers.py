"""The perception coherence loss as a sentence-transformers loss (the ``sentence-transformers`` extra).

sentence-transformers distils an embedding model from precomputed teacher embeddings stored as the
dataset's ``label`` column (its ``MSELoss`` pattern): ``SentenceTransformerTrainer`` collates them into
``labels`` and calls ``loss(sentence_features, labels)``. ``PerceptionCoherenceDistillLoss`` keeps that
interface but compares how the student and the teacher *rank* the other sentences of the batch
(docs/spec.md), so the student's embedding width need not equal the teacher's and no projection is
trained.

With ``mini_batch_size`` the loss uses gradient caching (GradCache: Gao, Zhang, Han and Callan,
"Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", arXiv 2101.06983), through
sentence-transformers' own implementation (``CachedLossMixin``, the one behind its Cached* losses):
the batch is embedded in chunks without gradient, the loss and its gradient with respect to every
embedding are computed over the whole batch, then each chunk is embedded again with gradient under the
random state of its first pass (so dropout draws the same masks) and back-propagated with its cached
gradient. Activation memory is then that of one chunk, whatever the batch size.

Importing ``pc_kernels`` does not import this module; importing this module without
sentence-transformers >= 6.2 raises an ImportError that names the extra to install.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor, nn

from .loss import PerceptionCoherenceLoss
from .options import computation_dtype

# 6.2: the first CachedLossMixin that replays float64 gradients in float64 and synchronizes DDP once a step.
_MIN_VERSION = (6, 2)
_INSTALL = 'sentence-transformers >= 6.2: pip install "pc-kernels[sentence-transformers]"'

try:
    import sentence_transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.losses import CachedLossMixin, has_static_embedding_input
except ImportError as error:
    raise ImportError(f"pc_kernels.sentence_transformers needs {_INSTALL} ({error})") from error
if tuple(int(part) for part in sentence_transformers.__version__.split(".")[:2]) < _MIN_VERSION:
    raise ImportError(f"pc_kernels.sentence_transformers needs {_INSTALL}; found {sentence_transformers.__version__}")

# Options of PerceptionCoherenceLoss that this loss fixes: the trainer needs the mean over the whole batch.
_FIXED_OPTIONS = ("reduction", "rows")


class PerceptionCoherenceDistillLoss(CachedLossMixin, nn.Module):
    """Perception coherence distillation from precomputed teacher embeddings, for SentenceTransformerTrainer.

    For each input text column the student's sentence embeddings (n, p) are compared with the teacher
    embeddings (n, q) of the ``label`` column by the perception coherence loss (docs/spec.md; Nguyen,
    Gamboa, Zhang, Chhaibi, Gratton and Giaccone, TMLR 2026, arXiv 2505.06595), and the per-column
    losses are averaged. p and q may differ: the loss compares ranks, not coordinates.

    Args:
        model: the student ``SentenceTransformer``.
        mini_batch_size: None (default): embed each column in one forward pass with gradient. An int
            >= 1: gradient caching (GradCache) with chunks of this many sentences, at the cost of a
            second forward pass of every chunk. The loss and the gradients are those of the same chunked
            forward pass with gradient: the uncached ones up to rounding, except that dropout draws its
            masks per chunk.
        show_progress_bar: a progress bar over the chunks (with ``mini_batch_size`` only).
        **options: options of ``pc_kernels.PerceptionCoherenceLoss`` (``tau``, ``dissimilarity``,
            ``discrepancy``, ``teacher_ranks``, ``normalize``, ``backend``, ``chunk_rows``,
            ``distributed``, ``algorithm``, ``bins``) with its defaults; ``reduction`` and ``rows`` are
            fixed (the batch mean over all reference rows).

    Labels (the trainer's ``label`` column):
        (n, q) teacher embeddings, the target of every input column, or (n, C, q) with one target per
        column for C input columns. They are compared in the student's computation dtype (float64 for a
        float64 student, else float32) and never receive a gradient.

    Output: the loss, a scalar tensor (float32, or float64 for a float64 student).

    Raises:
        TypeError: ``mini_batch_size`` not None or an int; an unknown option, or an option of the
            wrong type.
        ValueError: ``mini_batch_size`` < 1; ``reduction`` or ``rows`` given; an option value the loss
            does not accept; ``mini_batch_size`` with a model whose inputs cannot be split into chunks
            (a ``StaticEmbedding``). At a call: labels missing, not (n, q) or (n, C, q), with a batch
            size other than the sentences', or with C other than the number of input columns.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        mini_batch_size: int | None = None,
        show_progress_bar: bool = False,
        **options: Any,
    ) -> None:
        super().__init__()
        fixed = sorted(set(options) & set(_FIXED_OPTIONS))
        if fixed:
            raise ValueError(
                f"{', '.join(fixed)} cannot be set: the trainer needs the mean over the whole batch "
                f"(reduction='mean', rows=None); got {', '.join(f'{k}={options[k]!r}' for k in fixed)}"
            )
        if mini_batch_size is not None:
            if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, numbers.Integral):
                raise TypeError(
                    f"mini_batch_size must be None or an int >= 1; got {mini_batch_size!r} "
                    f"of type {type(mini_batch_size).__name__}"
                )
            if mini_batch_size < 1:
                raise ValueError(f"mini_batch_size must be None or an int >= 1; got {mini_batch_size!r}")
            if has_static_embedding_input(model):
                raise ValueError(
                    "mini_batch_size needs inputs that split into chunks of sentences; a StaticEmbedding model's "
                    "do not: use mini_batch_size=None"
                )
        self.model = model
        self.criterion = PerceptionCoherenceLoss(**options)
        self.mini_batch_size = None if mini_batch_size is None else int(mini_batch_size)  # type: ignore[assignment]
        self.show_progress_bar = show_progress_bar
        # Read by sentence-transformers' wrappers (MatryoshkaLoss and others): the backward runs from a hook.
        self.uses_gradient_cache = self.mini_batch_size is not None

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        """The loss of one batch: one feature dict per input column, labels as in the class docstring."""
        features = list(sentence_features)
        _checked_labels(labels, len(features))  # before any forward pass
        if self.mini_batch_size is not None:
            return self.forward_cached(features, labels)
        return self._distill([self.model(column)["sentence_embedding"] for column in features], labels)

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """The loss over the whole batch from per-column lists of chunk embeddings (``CachedLossMixin``).

        With ``with_backward`` the loss is back-propagated to the chunk embeddings (whose gradients
        become the cache) and returned detached.
        """
        loss = self._distill([torch.cat(chunks) for chunks in reps], labels)
        if not with_backward:
            return loss
        loss.backward()
        return loss.detach()

    def _distill(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        targets = _teacher_targets(labels, len(embeddings), embeddings[0].shape[0])
        losses = [
            self.criterion(student, teacher.to(device=student.device, dtype=computation_dtype(student.dtype)))
            for student, teacher in zip(embeddings, targets, strict=True)
        ]
        return torch.stack(losses).mean()

    def get_config_dict(self) -> dict[str, Any]:
        """The hyperparameters, as sentence-transformers writes them into the model card."""
        options = self.criterion.options
        config = {f.name: getattr(options, f.name) for f in fields(options) if f.name not in _FIXED_OPTIONS}
        return {**config, "mini_batch_size": self.mini_batch_size}

    @property
    def citation(self) -> str:
        """BibTeX of the method, as sentence-transformers collects it for the model card."""
        return """
@article{nguyen2026perception,
    title={Feature Representation Transferring to Lightweight Models via Perception Coherence},
    author={Nguyen, Hai-Vy and Gamboa, Fabrice and Zhang, Sixin and Chhaibi, Reda and Gratton, Serge
        and Giaccone, Thierry},
    journal={Transactions on Machine Learning Research},
    year={2026},
    eprint={2505.06595},
    archivePrefix={arXiv},
}
"""


def _checked_labels(labels: object, columns: int) -> Tensor:
    """Labels present and (n, q) or (n, columns, q); the batch size is checked against the embeddings later."""
    if labels is None:
        raise ValueError(
            "labels must hold the precomputed teacher embeddings (a 'label' column of the dataset, "
            "shape (n, q) or (n, columns, q)); got None"
        )
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor of teacher embeddings; got {type(labels).__name__}")
    if labels.dim() not in (2, 3):
        raise ValueError(
            f"labels must have shape (n, q) or (n, columns, q) (teacher embeddings); got shape {tuple(labels.shape)}"
        )
    if labels.dim() == 3 and labels.shape[1] != columns:
        raise ValueError(
            f"labels of shape (n, columns, q) must hold one teacher embedding per input column ({columns}); "
            f"got shape {tuple(labels.shape)}"
        )
    return labels


def _teacher_targets(labels: Tensor | None, columns: int, n: int) -> list[Tensor]:
    """One detached (n, q) teacher tensor per input column, from (n, q) or (n, columns, q) labels."""
    teacher = _checked_labels(labels, columns).detach()
    if teacher.shape[0] != n:
        raise ValueError(
            f"labels must hold one teacher embedding per sentence: the batch has {n} sentences per column, "
            f"labels have shape {tuple(teacher.shape)}"
        )
    return [teacher] * columns if teacher.dim() == 2 else list(teacher.unbind(1))
