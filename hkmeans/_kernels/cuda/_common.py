"""The one import of Numba's CUDA target, and what the CUDA kernels share: grid sizes,
fills and exact squared distances."""

import numba
from numba import cuda  # the only import of the CUDA target: a successor package goes here

__all__ = ["cuda", "blocks", "fill", "fill_2d", "sqdist"]

#: Most blocks of a grid-stride launch.
MAX_BLOCKS = 1 << 16


def blocks(n, threads):
    """Blocks of ``threads`` to cover ``n`` items once (at most :data:`MAX_BLOCKS`;
    grid-stride loops cover the rest)."""
    return max(1, min(MAX_BLOCKS, -(-n // threads)))


@cuda.jit(device=True)
def sqdist(X, i, C, j):
    """``||X[i] - C[j]||^2`` in float64, features in order (as the CPU's ``_sqdist``)."""
    s = 0.0
    for f in range(X.shape[1]):
        t = numba.float64(X[i, f]) - numba.float64(C[j, f])
        s += t * t
    return s


@cuda.jit
def fill(a, value):
    """Every entry of the 1-D array ``a`` set to ``value``."""
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = value


@cuda.jit
def fill_2d(a, value):
    """Every entry of the 2-D array ``a`` set to ``value``."""
    for q in range(cuda.grid(1), a.shape[0] * a.shape[1], cuda.gridsize(1)):
        a[q // a.shape[1], q % a.shape[1]] = value
