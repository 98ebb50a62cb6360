"""Test configuration: run Triton kernels under the interpreter when no GPU is present.

TRITON_INTERPRET must be set before triton is first imported, and only when CUDA is absent
(on a GPU the same tests run the compiled kernels on CUDA tensors).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
