"""The one import of Numba's CUDA target, and what the CUDA kernels share: grid sizes,
fills, exact squared distances, and column sums and prefix sums by tiles (the scans
of the counting sort and of the seeding's draws).

A scan by tiles is the "block sums, then a scan of the block sums" form: each tile of
rows is summed in order, the tile sums are scanned the same way (recursively, by the
caller), and each tile then adds its rows to its offset. Every thread walks a fixed
number of entries, so the work is spread evenly whatever the values, and the order of
the float additions is fixed by the tile size, never by scheduling."""

import numba
from numba import cuda  # the only import of the CUDA target: a successor package goes here

__all__ = ["cuda", "blocks", "fill", "fill_2d", "sqdist", "tile_scan", "tile_sums"]

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


@cuda.jit
def tile_sums(a, tile, out):
    """``out[t, c]``: the sum of ``a[t * tile : (t + 1) * tile, c]``, rows in order; one
    thread per (tile, column). Applied again to ``out`` until one row is left, it sums
    whole columns in an order fixed by ``tile`` alone."""
    rows, cols = a.shape
    for q in range(cuda.grid(1), out.shape[0] * cols, cuda.gridsize(1)):
        t = q // cols
        c = q - t * cols
        s = a[t * tile, c]
        for i in range(t * tile + 1, min((t + 1) * tile, rows)):
            s += a[i, c]
        out[t, c] = s


@cuda.jit
def tile_scan(a, tile, offsets, out, inclusive):
    """Prefix sums of the columns of ``a`` by tiles of ``tile`` rows, one thread per
    (tile, column): ``out[i, c]`` is ``offsets[t, c]`` (what the earlier tiles add up
    to, ``t = i // tile``) plus ``a[t * tile : i, c]`` (``: i + 1`` if ``inclusive``)
    added in order. ``out`` may be ``a``."""
    rows, cols = a.shape
    for q in range(cuda.grid(1), offsets.shape[0] * cols, cuda.gridsize(1)):
        t = q // cols
        c = q - t * cols
        s = offsets[t, c]
        for i in range(t * tile, min((t + 1) * tile, rows)):
            v = a[i, c]
            if inclusive:
                s += v
                out[i, c] = s
            else:
                out[i, c] = s
                s += v
