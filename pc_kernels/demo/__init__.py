"""The distillation harness: ``python -m pc_kernels.demo`` (console script ``pc-distill``).

A label-trained teacher is distilled, without labels, into small students of several embedding
widths by perception coherence and by baseline losses (RKD distance and angle, PKT, SP, FitNet);
every student is evaluated on a held-out split (k-NN accuracy, Recall@K, and how coherent its
distances are with the teacher's). Files: config (settings), data, models, baselines,
objectives (method → loss), train, teacher_cache, evaluate, experiment (the sweep), report,
plots, __main__ (command line).
"""

from .config import DISTILLATION_METHODS, DemoConfig
from .experiment import ExperimentResult, run_experiment

__all__ = ["DISTILLATION_METHODS", "DemoConfig", "ExperimentResult", "run_experiment"]
