from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="pc-kernels",
    version="0.1.0",
    description="Triton GPU kernels and a memory-bounded PyTorch path for the perception coherence distillation loss",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pc_kernels", "pc_kernels.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "numpy",
        "triton>=3.6; platform_system == 'Linux'",
    ],
    extras_require={
        "demo": ["scikit-learn", "matplotlib", "tqdm"],
        "bench": ["matplotlib", "pytest-benchmark"],
        "test": ["pytest", "pytest-benchmark", "hypothesis", "scipy", "scikit-learn", "matplotlib", "tqdm"],
    },
    entry_points={"console_scripts": ["pc-distill=pc_kernels.demo.__main__:main"]},
)
