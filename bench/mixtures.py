"""The benchmarks' data: overlapping Gaussians, with NumPy alone (so that a script
timing an older checkout of hkmeans can use it too)."""

from __future__ import annotations

import numpy as np


def mixture(n, d, seed=0, dtype=np.float32, n_components=50):
    """A mixture of ``n_components`` overlapping Gaussians in ``d`` dimensions (means
    N(0, 1), unit spread): with 1000 clusters, Lloyd's labels keep changing for well
    over 20 iterations."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_components, d))
    return (means[rng.integers(0, n_components, n)] + rng.normal(size=(n, d))).astype(dtype)
