"""The digits distillation demo: ``python -m distill.demo`` from the repository root.

A label-trained teacher on scikit-learn's bundled digits is distilled, without labels, into small
students of several embedding widths by perception coherence and by the baselines of
``distill.losses``; every student is evaluated on a held-out split (k-NN accuracy, Recall@K, and how
coherent its distances are with the teacher's). Files: config (settings), data, models, teacher_cache
(the label-trained teacher), evaluate (the measures), experiment (the sweep), report, plots, __main__
(command line). The loss registry, metrics, training loop and report provenance are shared with the
quality benchmark (``distill.quality``).
"""

from .config import DemoConfig
from .experiment import ExperimentResult, run_experiment

__all__ = ["DemoConfig", "ExperimentResult", "run_experiment"]
