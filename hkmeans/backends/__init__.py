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
``kmeans_plusplus(order, first, rand, weights)``, ``draw_order()``
    Greedy k-means++ seeding, one pass per centre, its draws through the rows in
    ``order``; the order of the rows by their contents alone.
``select(labels, k, take, scores)``
    ``take[c]`` rows of each cluster ``c``, those with the smallest ``scores``.
``counts(labels, k)``, ``total(values)``
    Rows per cluster; the sum of a per-row array.
``closeness(sqdist)``
    Scores by which the "closest" selection ranks rows.
``random_scores(rng)``, ``oversample(weights, factor, total, rng)``, ``other_rows(exclude, m, rng)``
    One uniform draw per row; k-means||'s independent draws; a few random rows.
``farthest_rows(sqdist, m)``
    The ``m`` rows of largest ``sqdist``.
``mean_variance()``, ``normalized(alloc)``
    The mean feature variance; the rows scaled to unit norm.
``greedy_seeding``
    Whether k-means++ may take one pass per centre (else it is k-means||).
``resumable_runs``
    Whether a Lloyd run's state can be saved midway and resumed from (else a run
    stopped midway starts over; finished steps are kept either way).

Per-row arrays (labels, distances, scores) are whatever the backend keeps them as:
NumPy arrays in process, persisted dask arrays on a cluster; the engine hands them
back to the backend and never builds one itself.

:class:`~hkmeans.backends.cpu.CPUBackend` runs on this machine's cores;
:class:`~hkmeans.backends.cuda.CUDABackend` on an NVIDIA GPU (numba-cuda, imported only
when one is made).
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import sparse

from .._params import BACKENDS, DEVICES
from .cpu import CPUBackend
from .csr import SparseBackend
from .cuda import CUDABackend


def is_dask(a) -> bool:
    """Whether ``a`` is a dask array (without importing dask)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(a, da.Array)


def dask_module():
    """:mod:`hkmeans.backends.dask`; an ImportError of one line without dask."""
    try:
        from . import dask
    except ImportError as e:
        raise ImportError(f'The dask backend needs dask and distributed ({e}): pip install "hkmeans[dask]"') from None
    return dask


def resolve(X, device: str = "cpu", client=None, backend: str = "auto"):
    """The backend for data ``X`` on ``device``: ``X`` itself if it already is one; a
    :class:`~hkmeans.backends.dask.DaskBackend` (on ``client``, see
    :func:`hkmeans.backends.dask.pick_client`) for a dask array or when ``backend``
    is "dask"; a :class:`~hkmeans.backends.csr.SparseBackend` over a sparse CSR
    matrix; else a :class:`CPUBackend`, or for ``device="cuda"`` a
    :class:`~hkmeans.backends.cuda.CUDABackend`, over the array (validated: 2-D,
    C-ordered float32 or float64, finite)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}.")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if hasattr(X, "lloyd_run"):
        return X
    if backend == "dask" or (backend == "auto" and is_dask(X)):
        return dask_module().DaskBackend(X, client, device=device)
    if is_dask(X):
        raise ValueError('backend="cpu" takes an in-memory array, got a dask array: use backend="dask" or "auto".')
    if sparse.issparse(X):
        if device != "cpu":
            raise ValueError(f'device={device!r} takes dense input; sparse matrices run on device="cpu".')
        return SparseBackend(X)
    X = X if isinstance(X, np.ndarray) else np.asarray(X)
    return CUDABackend(X) if device == "cuda" else CPUBackend(X)


def lookup(table: np.ndarray, labels):
    """``table[labels]``: for dask ``labels``, lazily, chunk by chunk."""
    return dask_module().lookup(table, labels) if is_dask(labels) else table[labels]
