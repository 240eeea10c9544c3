"""Hypothesis strategies shared by the tests."""

import numpy as np
from hypothesis import strategies as st

from hkmeans import ClusterTree


@st.composite
def trees(draw, max_points=150, with_distances=True):
    """Random cluster trees of 1 to 3 levels, empty clusters and tied distances included."""
    n = draw(st.integers(1, max_points))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels, size = [], n
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.integers(1, size + 2))
        labels.append(rng.integers(0, k, size))
        size = k
    distances = None
    if with_distances:
        distances = rng.integers(0, 4, n).astype(float) if draw(st.booleans()) else rng.random(n)
    return ClusterTree.from_labels(labels, distances=distances)
