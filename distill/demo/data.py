"""The data: a fixed, stratified train/test split of flattened images with integer labels.

The default is scikit-learn's bundled handwritten digits (1797 8×8 images, bundled with
scikit-learn, so nothing is downloaded). A local folder in torchvision ``ImageFolder`` layout
can be used instead; torchvision is imported only then, and nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# The split is part of the dataset, not of an experiment seed: every run evaluates on the same samples.
TEST_FRACTION = 0.25
SPLIT_SEED = 0


@dataclass(frozen=True)
class Split:
    """A train/test split.

    Attributes:
        name: what the data is (shown in reports).
        train_x: (n_train, d) float32 features in [0, 1].
        train_y: (n_train,) int64 labels (used by the teacher and by evaluation only).
        test_x: (n_test, d) float32 features.
        test_y: (n_test,) int64 labels.
        class_names: the name of each label, indexed by label (digits: "0" … "9").
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes: the largest label + 1."""
        return int(torch.cat([self.train_y, self.test_y]).max()) + 1

    def fingerprint(self) -> str:
        """A short hash of the split's contents (keys the teacher cache)."""
        digest = hashlib.sha256()
        for tensor in (self.train_x, self.train_y, self.test_x, self.test_y):
            digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()[:16]

    def to(self, device: torch.device) -> Split:
        """A copy with every tensor on ``device``."""
        return Split(
            self.name,
            self.train_x.to(device),
            self.train_y.to(device),
            self.test_x.to(device),
            self.test_y.to(device),
            self.class_names,
        )


def _split(name: str, x: np.ndarray, y: np.ndarray, class_names: tuple[str, ...]) -> Split:
    from sklearn.model_selection import train_test_split

    train_x, test_x, train_y, test_y = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    return Split(
        name,
        _tensor(train_x, np.float32),
        _tensor(train_y, np.int64),
        _tensor(test_x, np.float32),
        _tensor(test_y, np.int64),
        class_names,
    )


def _tensor(array: np.ndarray, dtype: type) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype))


def load_digits_split() -> Split:
    """scikit-learn's handwritten digits: 1347 train / 450 test samples of 64 pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    names = tuple(str(name) for name in digits.target_names)
    return _split("scikit-learn digits (8x8)", digits.data / 16.0, digits.target, names)


def load_image_folder_split(folder: str | Path, image_size: int) -> Split:
    """Images of a local ``ImageFolder`` tree (root/<class>/<image>), grayscale, resized, flattened.

    Args:
        folder: an existing folder with one sub-folder of images per class.
        image_size: side of the square grayscale images, in pixels; features are image_size².

    Raises:
        ValueError: the folder does not exist or holds fewer than two classes.
        ImportError: torchvision is not installed.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"image_folder must be an existing folder; got {str(folder)!r}")
    try:
        from torchvision import datasets, transforms
    except ImportError as error:
        raise ImportError(
            "image_folder needs torchvision (pip install torchvision); without it the harness "
            "uses scikit-learn's bundled digits"
        ) from error
    transform = transforms.Compose(
        [transforms.Grayscale(), transforms.Resize((image_size, image_size)), transforms.ToTensor()]
    )
    dataset = datasets.ImageFolder(str(root), transform=transform)
    if len(dataset.classes) < 2:
        raise ValueError(f"image_folder must hold at least two class sub-folders; {str(root)!r} has {dataset.classes}")
    x = np.stack([image.reshape(-1).numpy() for image, _ in dataset])
    y = np.asarray(dataset.targets)
    return _split(f"ImageFolder {root.name} ({image_size}x{image_size} grayscale)", x, y, tuple(dataset.classes))
