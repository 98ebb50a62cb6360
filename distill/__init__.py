"""Distillation harnesses for pc_kernels, run from the repository root (not installed with the library).

``python -m distill.demo``: the digits demo (a label-trained MLP teacher, students of widths 2 to 16).
``python -m distill.quality``: the quality benchmark on a real pretrained teacher (all-MiniLM-L6-v2) and
text corpora, with the batch-size study (``python -m distill.quality batch-study``).

Shared by both: losses (the baselines), objectives (method name → loss, with any option of the
perception coherence loss), metrics (retrieval and coherence measures), training (the loop),
tables and comparison (statistics over seeds, pc against the best baseline), provenance (machine,
commit, versions of a run), runtime (device, cache folder, run settings), cli (argument types).
"""
