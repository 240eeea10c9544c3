"""Near-duplicate search on the GPU: the similarities of a block of query rows and a
block of candidate rows, gathered by row number from the rows on the device."""

import numba

from ._common import cuda


@cuda.jit
def block_scores(U, qrows, prows, out):
    """``out[r, j] = U[qrows[r]] . U[prows[j]]``: float64 products summed in feature
    order, one thread per entry (grid-stride). ``U`` holds the unit rows for
    "cosine" (as the CPU sweep loads them), the rows for "euclidean"."""
    nq = qrows.shape[0]
    npr = prows.shape[0]
    for e in range(cuda.grid(1), nq * npr, cuda.gridsize(1)):
        r = e // npr
        j = e - r * npr
        q = qrows[r]
        p = prows[j]
        s = 0.0
        for f in range(U.shape[1]):
            s += numba.float64(U[q, f]) * numba.float64(U[p, f])
        out[r, j] = s
