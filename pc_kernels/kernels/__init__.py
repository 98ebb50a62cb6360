"""Triton kernels (no autograd): imported only by the Triton stages of ``pc_kernels.stages``.

soft_rank.py       soft ranks of candidate rows and their gradient, one reference row per program
binned_grid.py     the binned rank stage's grid passes: fixed-point deposits, exact sign part, read-back
dissimilarity.py   tiled float64 Gram-form dissimilarities, written in the candidate layout
sigmoid.py         the accurate and the fast (tanh.approx) sigmoid and its slope
launch.py          tile sizes, warps and pipelining depth of every kernel, GPU and interpreter
variants.py        every compile variant, for the offline Hopper compile test and model
"""
