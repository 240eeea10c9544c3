"""The backend contract: what the engine asks of the rows of the data.

The engine (:mod:`hkmeans.kmeans`, :mod:`hkmeans.seeding`, :mod:`hkmeans.hierarchy`)
reaches the big array only through these operations, each a whole pass over the rows
(faiss's shape: an index handed to the trainer; scikit-learn's: one ``lloyd_iter`` per
pass), never a single kernel. Per-row arrays (labels, distances, scores) are whatever
the backend keeps them as (NumPy arrays in process, persisted dask arrays on a
cluster): the engine hands them back and never builds one itself.

Every backend (:class:`~hkmeans.backends.cpu.CPUBackend`,
:class:`~hkmeans.backends.csr.SparseBackend`,
:class:`~hkmeans.backends.cuda.CUDABackend`,
:class:`~hkmeans.backends.dask.DaskBackend`) conforms: the type checker checks it
(``_conformance`` in :mod:`hkmeans.backends`), and so does a test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class LloydRunProtocol(Protocol):
    """The per-row state of one Lloyd run (labels, distances, bounds), kept inside the
    backend between passes."""

    def search(self, centers: np.ndarray) -> None:
        """Assign every row to its nearest centre (bounds updated)."""

    def step(self, centers: np.ndarray) -> Any:
        """One pass: search, then float64 sums, counts, inertia and rows changed
        (a :class:`~hkmeans.backends.cpu.LloydStep`)."""

    def loosen(self, moves: np.ndarray) -> None:
        """Widen the bounds by how far each centre moved."""

    def farthest(self, m: int) -> tuple:
        """The ``m`` rows farthest from their centres, their labels and weights
        (to refill empty clusters)."""

    def finish(self, order: np.ndarray) -> tuple:
        """``(labels, squared distances, inertia)`` of the run, labels renumbered by
        ``order``."""

    def state(self) -> dict:
        """What a checkpoint keeps to resume the run."""


@runtime_checkable
class Backend(Protocol):
    """Where the rows of the data live and how a pass over them runs."""

    #: What the backend is: "cpu", "sparse", "cuda" or "dask".
    name: str
    #: Whether k-means++ may take one pass per centre (else seeding is k-means||).
    greedy_seeding: bool
    #: Whether a Lloyd run's state can be saved midway and resumed from.
    resumable_runs: bool

    @property
    def shape(self) -> tuple:
        """``(rows, features)``."""

    @property
    def dtype(self) -> np.dtype:
        """Of the rows."""

    @property
    def weights(self) -> Any:
        """Per-row weights, or None."""

    def take(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The rows ``rows`` (a small set: centres, a subset) as an in-memory array."""

    def assign(self, centers: np.ndarray) -> tuple:
        """Nearest centre of every row: ``(labels int64, squared distances float64)``."""

    def routed_assign(self, parents: np.ndarray, child_offsets: np.ndarray, children: np.ndarray) -> tuple:
        """Nearest child of each row's nearest parent (split levels)."""

    def cluster_sums(self, labels: Any, k: int) -> tuple:
        """Float64 sums of each cluster's rows, and its weight."""

    def lloyd_run(self, group_offsets: np.ndarray, bounds: bool = True, state: dict | None = None) -> Any:
        """A :class:`LloydRunProtocol` over these rows."""

    def kmeans_plusplus(self, order: np.ndarray, first: int, rand: np.ndarray, weights: Any) -> np.ndarray:
        """Greedy k-means++: one pass per centre, draws through the rows in ``order``."""

    def select(self, labels: Any, k: int, take: np.ndarray, scores: Any) -> np.ndarray:
        """``take[c]`` rows of each cluster ``c``, those with the smallest ``scores``."""

    def resampling_subset(self, labels: Any, k: int, take: np.ndarray, scores: Any, alloc: Any = None) -> Any:
        """The rows :meth:`select` picks, as a backend of their own."""

    def counts(self, labels: Any, k: int) -> np.ndarray:
        """Rows per cluster."""

    def cluster_weights(self, labels: Any, k: int) -> np.ndarray:
        """Weight per cluster (rows per cluster without weights)."""

    def total(self, values: Any) -> float:
        """The (weighted) sum of a per-row array."""

    def closeness(self, sqdist: Any) -> Any:
        """Scores by which the "closest" selection ranks rows."""

    def random_scores(self, rng: np.random.Generator) -> Any:
        """One uniform draw per row."""

    def oversample(self, weights: Any, factor: float, total: float, rng: np.random.Generator) -> np.ndarray:
        """k-means||'s independent draws."""

    def other_rows(self, exclude: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
        """``m`` random rows not in ``exclude``."""

    def farthest_rows(self, sqdist: Any, m: int) -> np.ndarray:
        """The ``m`` rows of largest ``sqdist``."""

    def mean_variance(self) -> float:
        """The mean feature variance (k-means' tolerance scale)."""

    def normalized(self, alloc: Any = None) -> Any:
        """The rows scaled to unit norm, as a backend of the same kind."""

    def weighted(self, weights: Any) -> Any:
        """The same rows with per-row weights."""


@runtime_checkable
class PerRowArrays(Protocol):
    """What the estimators, the tree, the sampling and the run directory do with rows
    and per-row arrays (labels, distances, scores) outside a fit, for one kind of array:
    in memory (:data:`~hkmeans.backends.in_memory.IN_MEMORY`) or lazy on a cluster
    (:data:`~hkmeans.backends.dask.arrays.LAZY`). :func:`hkmeans.backends.arrays_of`
    picks it for an array."""

    #: Whether the arrays stay where they are computed (the tree's level-0 members
    #: cannot be listed here).
    lazy: bool

    def validated(self, estimator: Any, X: Any, reset: bool, accept_sparse: Any) -> Any:
        """Rows ``X`` checked for ``estimator`` (its ``n_features_in_`` set with ``reset``,
        else compared), or on their own for None; a lazy array by shape and dtype only."""

    def normalized(self, X: Any) -> Any:
        """The rows scaled to unit norm."""

    def check_range(self, X: Any, dtype: Any, metric: str) -> None:
        """A one-line ValueError if the rows' values leave ``dtype``'s range or (with
        ``metric="euclidean"``) their squared distances would (in memory: a lazy
        array's chunks are checked by the tasks of the first pass that reads them)."""

    def in_dtype(self, X: Any, dtype: Any, metric: str) -> Any:
        """``X`` cast to ``dtype``, its values checked as :meth:`check_range` checks them
        against that dtype first (a lazy array's per chunk, before the cast)."""

    def distances(self, X: Any, centers: np.ndarray, client: Any = None) -> Any:
        """Euclidean distance of each row to each centre."""

    def inertia(self, X: Any, centers: np.ndarray, labels: Any, sample_weight: Any = None, client: Any = None) -> float:
        """(Weighted) sum of squared distances of the rows to ``centers[labels]``."""

    def lookup(self, table: np.ndarray, labels: Any) -> Any:
        """``table[labels]``."""

    def as_labels(self, a: Any, name: str) -> Any:
        """``a`` as 1-D int64 labels; a one-line ValueError if it cannot be."""

    def max_label(self, a: Any) -> int | None:
        """The largest label, or None where it is checked as it is computed."""

    def as_distances(self, d: Any, shape: tuple) -> Any:
        """``d`` as float64 distances of ``shape``; a one-line ValueError if it cannot be."""

    def counts(self, labels: Any, k: int) -> np.ndarray:
        """Rows per cluster."""

    def sums(self, labels: Any, weights: Any, k: int) -> np.ndarray:
        """Per cluster, the float64 sum of ``weights`` (one per row) over its rows."""

    def members(self, labels: Any, k: int) -> tuple:
        """``(offsets, order)``: the rows of each cluster, in CSR form."""

    def random_scores(self, rng: np.random.Generator, labels: Any) -> Any:
        """One uniform draw per row of ``labels``."""

    def pick(self, labels: Any, k: int, take: np.ndarray, scores: Any, sizes: np.ndarray, members: Any) -> np.ndarray:
        """``take[c]`` rows of each cluster ``c``, those of smallest ``scores``, sorted
        (``members()`` gives :meth:`members` where it is cached)."""

    def save(self, arrays: dict, file: str, folder: str) -> None:
        """Write per-row ``arrays``: to the ``.npz`` ``file``, or chunk by chunk under
        ``folder``."""

    def gathered(self, a: Any) -> np.ndarray:
        """``a`` as an in-memory array."""

    def reduce_rows(self, a: Any, leaf: Callable, combine: Callable, args: tuple) -> Any:
        """``combine`` of the list of ``leaf(chunk, first_row, *args)`` over the 1-D
        ``a`` in chunks of rows, where they are (a Dask cluster's workers); the
        parts in row order, a few at a time on a cluster."""
