"""Backends: where the rows of the data live and how a pass over them runs.

The engine (:mod:`hkmeans.kmeans`, :mod:`hkmeans.seeding`, :mod:`hkmeans.hierarchy`)
reaches the big array only through a backend, whose operations are whole passes over
the rows, not single kernels (faiss's shape: an index handed to the trainer;
scikit-learn's: one ``lloyd_iter`` call per pass). A backend has:

``shape``, ``dtype``
    Of the rows it holds.
``take(rows, out=None)``
    The rows ``rows`` (a small set: centres, a resampling subset) as an in-memory array.
``assign(centers)``
    Nearest centre of every row: ``(labels int64, squared distances float64)``.
``routed_assign(parents, child_offsets, children)``
    Nearest child of each row's nearest parent (split levels).
``lloyd_run(group_offsets, bounds, state)``
    The per-row state of one Lloyd run (labels, distances, bounds), kept inside the
    backend; its ``step(centers)`` is one pass: search, then float64 sums, counts,
    inertia and rows changed.
``kmeans_plusplus(first, rand, weights)``
    Greedy k-means++ seeding, one pass per centre.
``select(labels, k, take, scores)``
    ``take[c]`` rows of each cluster ``c``, those with the smallest ``scores``.
``mean_variance()``, ``normalized(out)``
    The mean feature variance; the rows scaled to unit norm.

:class:`~hkmeans.backends.cpu.CPUBackend` runs on this machine's cores;
:class:`~hkmeans.backends.cuda.CUDABackend` on an NVIDIA GPU (numba-cuda, imported only
when one is made).
"""

from __future__ import annotations

import numpy as np

from .._params import DEVICES
from .cpu import CPUBackend
from .cuda import CUDABackend


def resolve(X, device: str = "cpu"):
    """The backend for data ``X`` on ``device``: ``X`` itself if it already is one,
    else a :class:`CPUBackend` or :class:`CUDABackend` over the array (validated: 2-D,
    C-ordered float32 or float64, finite)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}.")
    if isinstance(X, (CPUBackend, CUDABackend)):
        return X
    X = X if isinstance(X, np.ndarray) else np.asarray(X)
    return CUDABackend(X) if device == "cuda" else CPUBackend(X)
