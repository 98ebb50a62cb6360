import ast
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_version() -> str:
    """``__version__`` from pc_kernels/_version.py, parsed (importing the package would need torch)."""
    path = HERE / "pc_kernels" / "_version.py"
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__version__"]:
            return ast.literal_eval(node.value)
    raise RuntimeError(f"no __version__ = '...' assignment in {path}")


# Everything each extra's code imports beyond the core (torch, numpy).
DEMO = ["scipy", "scikit-learn", "matplotlib", "tqdm"]  # pc_kernels/demo
BENCH = ["matplotlib", "pytest", "pytest-benchmark"]  # benchmarks/
CPU = ["numba"]  # compiled loops for the CPU stages (pc_kernels/stages/numba_loops.py); torch is the fallback
# pc_kernels/sentence_transformers.py (6.2: the GradCache it builds on keeps float64 and syncs DDP once a step);
# [train] brings the trainer's datasets and accelerate.
SENTENCE_TRANSFORMERS = ["sentence-transformers[train]>=6.2"]
TEST = [
    "pytest",
    "numba",
    "hypothesis",
    "scipy",
    "scikit-learn",
    "matplotlib",
    "tqdm",
    *SENTENCE_TRANSFORMERS,
    # The tests run the Triton kernels under its CPU interpreter; triton ships for Linux only.
    "triton>=3.6; platform_system == 'Linux'",
    "ruff",
    "mypy",
]

setup(
    name="pc-kernels",
    version=read_version(),
    description="Triton GPU kernels and a memory-bounded PyTorch path for the perception coherence distillation loss",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license_expression="Apache-2.0",
    license_files=["LICENSE"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Typing :: Typed",
    ],
    packages=find_packages(include=["pc_kernels", "pc_kernels.*"]),
    package_data={"pc_kernels": ["py.typed"]},
    python_requires=">=3.10",
    # No triton here: CUDA builds of torch install their own, and the CPU path does not use it.
    install_requires=["torch>=2.4", "numpy"],
    extras_require={
        "demo": DEMO,
        "bench": BENCH,
        "test": TEST,
        "cpu": CPU,
        "triton": ["triton>=3.6"],
        "sentence-transformers": SENTENCE_TRANSFORMERS,
    },
    entry_points={"console_scripts": ["pc-distill=pc_kernels.demo.__main__:main"]},
)
