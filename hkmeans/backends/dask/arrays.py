"""Per-row arrays that stay on a Dask cluster: :data:`LAZY`, the
:class:`~hkmeans.backends.protocol.PerRowArrays` of dask arrays (its in-memory twin is
:data:`~hkmeans.backends.in_memory.IN_MEMORY`). Labels and distances are checked
chunk by chunk where they are computed, not here. What they compute runs on the
client holding them (:func:`~hkmeans.backends.dask.client.holder`): their chunks turn
into ``Delayed`` objects that no longer show it."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from ..in_memory import normalize_rows
from .backend import DaskBackend, as_rows
from .client import compute, holder
from .reductions import counts, first_item, lookup, map_chunks, random_scores, sums, tree_reduce
from .selection import select
from .storage import map_rows, store
from .tasks import cast_checked, rows_block


class DaskArrays:
    """:class:`~hkmeans.backends.protocol.PerRowArrays` for dask arrays."""

    lazy = True

    def validated(self, estimator, X, reset: bool, accept_sparse):
        X = as_rows(X)
        if estimator is None:
            return X
        if reset:
            estimator.n_features_in_ = X.shape[1]
        elif X.shape[1] != estimator.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
                f"{estimator.n_features_in_} features as input."
            )
        return X

    def normalized(self, X):
        return map_rows(X, normalize_rows)

    def check_range(self, X, dtype, metric: str) -> None:
        pass  # a pass over every chunk: checked in the fit's first (tasks.check_values)

    def in_dtype(self, X, dtype, metric: str):
        if X.dtype == dtype:
            return X
        return X.map_blocks(cast_checked, np.dtype(dtype), metric, dtype=dtype)

    def distances(self, X, centers, client=None):
        return DaskBackend(X, client, persist=False).distances(centers)

    def inertia(self, X, centers, labels, sample_weight=None, client=None) -> float:
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported for a dask array.")
        return DaskBackend(X, client).inertia(centers, labels)

    def lookup(self, table, labels):
        return lookup(table, labels)

    def as_labels(self, a, name):
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be a 1-D integer array, got shape {a.shape} and dtype {a.dtype}.")
        return a.astype(np.int64)

    def max_label(self, a) -> int | None:
        return None

    def as_distances(self, d, shape):
        if d.shape != shape:
            raise ValueError(f"distances must have one entry per data point ({shape[0]}), got shape {d.shape}.")
        return d.astype(np.float64)

    def counts(self, labels, k: int) -> np.ndarray:
        return counts(labels, k, holder([labels])).astype(np.int64)

    def sums(self, labels, weights, k: int) -> np.ndarray:
        # chunked as the labels, whatever the weights are (a tree takes in-memory
        # distances beside dask labels, or other chunks)
        weights = da.asarray(weights).rechunk(labels.chunks)
        return sums(labels, weights, k, holder([labels, weights]))

    def members(self, labels, k: int) -> tuple:
        raise ValueError("the level-0 members of a tree over a dask array stay on the workers.")

    def random_scores(self, rng, labels):
        return random_scores(rng, labels)

    def pick(self, labels, k, take, scores, sizes, members) -> np.ndarray:
        return select(labels, k, take, scores, sizes=sizes, client=holder([labels, scores]), sort=True)

    def save(self, arrays: dict, file, folder) -> None:
        store(folder, holder(list(arrays.values())), **arrays)

    def gathered(self, a) -> np.ndarray:
        return compute(a, client=holder([a]))[0]

    def reduce_rows(self, a, leaf, combine, args):
        blocks = map_chunks([a], rows_block, leaf, dask.delayed(args))
        return compute(tree_reduce(blocks, first_item, combine), client=holder([a]))[0]


LAZY = DaskArrays()
