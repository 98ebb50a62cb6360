"""The stages a computation path is composed of; ``pc_kernels.pipeline`` runs them over blocks of
reference rows. Every stage works on the candidate layout (``layout.py``).

    interfaces.py        the four stage interfaces: DissimilarityStage, RowScaleStage, RankStage, Discrepancy
    registry.py          every implementation under the name the plan or the options choose it by
    distances.py         the dissimilarity policy of every fast path (prepared features, Gram form, snap),
                         the torch dissimilarity stage (torch and compiled loops), and the backward all
                         dissimilarity stages share
    triton_distances.py  the Triton dissimilarity stage (fused kernel, same policy)
    row_scale.py         the per-reference factor of "row_std" / "none", forward and backward
    dense_ranks.py       the dense torch rank stage (every sigmoid, bounded workspace)
    triton_ranks.py      the fused Triton rank stage
    binned_ranks.py      the binned rank stage (grid deposit, FFT convolution, read-back)
    triton_binned_ranks.py  its grid passes as Triton kernels (CUDA tensors; FFT by torch)
    hard_ranks.py        exact average ranks by sorting
    discrepancy.py       "mse" / "spearman" / "reciprocal_rank_mse", forward and backward
    layout.py            the candidate layout and its conversions
    numba_loops.py       compiled CPU loops for the passes of several stages (numba; torch is the fallback)
    numba_cache.py       their on-disk cache, keyed by everything they compile from other modules
"""
