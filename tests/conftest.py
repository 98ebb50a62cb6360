"""Test configuration: run Triton kernels under the interpreter when no GPU is present.

TRITON_INTERPRET must be set before triton is first imported, and only when CUDA is absent
(on a GPU the same tests run the compiled kernels on CUDA tensors).
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def one_torch_thread():
    """One CPU thread for torch during a test (the harnesses' models are tiny: one thread is fastest, above
    all on a busy machine); the previous count is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
