"""Per-row arrays in this process's memory: NumPy arrays and memory maps.

The neutral NumPy helpers that the backends, the tree and the sampling share, and
:data:`IN_MEMORY`, the :class:`~hkmeans.backends.protocol.PerRowArrays` of in-memory
arrays (its lazy twin lives in :mod:`hkmeans.backends.dask.arrays`).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.metrics import euclidean_distances
from sklearn.preprocessing import normalize
from sklearn.utils.validation import check_array, validate_data

from .._kernels.cpu import groups, select
from .._threads import kernel_threads
from .._validation import range_error
from ..io import save_npz

group_by_label = groups.group_by_label
water_fill = select.water_fill

#: Float types the estimators keep; others are cast to the first.
FLOAT_DTYPES = [np.float64, np.float32]


def pick_members(offsets, order, scores, n_take):
    """:func:`hkmeans._kernels.cpu.select.pick_members` on the threads its size calls for."""
    with kernel_threads(len(order)):
        return select.pick_members(offsets, order, scores, n_take)


def split_counts(parent_counts, offsets, order, caps, keys):
    """:func:`hkmeans._kernels.cpu.select.split_counts` on the threads its size calls for."""
    with kernel_threads(len(caps)):
        return select.split_counts(parent_counts, offsets, order, caps, keys)


def row_blocks(X):
    """Slices of about 2**20 entries of ``X`` (8 MB as float64), whole rows each: host
    loops over them need no temporary the size of ``X``."""
    block = max(1, (1 << 20) // max(1, X.shape[1]))
    return [slice(a, a + block) for a in range(0, X.shape[0], block)]


#: Rows whose float64 norm is below this or not finite are scaled by their largest
#: value before they are normalised: their squares underflow or overflow.
_SAFE_NORMS = (1e-150, 1e150)


def normalize_rows(X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), into ``out`` (by default a
    new array), in blocks of rows; rows of any finite magnitude."""
    out = np.empty(X.shape, dtype=X.dtype) if out is None else out
    for rows in row_blocks(X):
        x = X[rows]
        norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
        far = ~((norms > _SAFE_NORMS[0]) & (norms < _SAFE_NORMS[1]))
        norms[norms == 0] = 1.0
        y = x / norms[:, None]
        if far.any():
            far = np.flatnonzero(far)
            scale = np.abs(x[far]).max(axis=1, initial=0.0)
            far, scale = far[scale > 0], scale[scale > 0]  # zero rows stay zero
            z = x[far] / scale[:, None]
            y[far] = z / np.sqrt(np.einsum("ij,ij->i", z, z, dtype=np.float64))[:, None]
        out[rows] = y
    return out


def largest_magnitude(X) -> float:
    """The largest absolute value of ``X`` (dense or sparse), in blocks of rows."""
    if sparse.issparse(X):
        return float(np.abs(X.data).max(initial=0.0))
    return max((float(np.abs(X[rows]).max(initial=0.0)) for rows in row_blocks(X)), default=0.0)


def refuse_out_of_range(X, dtype, metric: str) -> None:
    """A one-line ValueError if the values of ``X`` leave ``dtype``'s range or (with
    ``metric="euclidean"``) their squared distances would (see :func:`range_error`)."""
    why = range_error(largest_magnitude(X), dtype, X.shape[1], metric)
    if why is not None:
        raise ValueError(why)


def rounding_bound(X) -> float:
    """Relative bound on the rounding of a full nearest-centroid search over the rows
    of ``X`` (see :func:`hkmeans._kernels.cpu.assign.assign`), with a factor 2 to spare."""
    return 2.0 * (X.shape[1] + 4) * float(np.finfo(X.dtype).eps)


def float32_rounded(a) -> np.ndarray:
    """Float64 ``a`` rounded to float32's 24-bit significand (to nearest, ties to
    even), kept in float64: ``a.astype(np.float32)`` where that is a normal float32,
    and without float32's range elsewhere (no overflow to inf, no flush to 0)."""
    mantissa, exponent = np.frexp(np.asarray(a, dtype=np.float64))
    with np.errstate(over="ignore"):  # float64's largest values round up to inf
        return np.ldexp(np.round(mantissa * 2.0**24) * 2.0**-24, exponent)


def weighted_total(values, weights) -> float:
    """``sum(weights * values)``; the plain sum without weights."""
    return float(np.sum(values)) if weights is None else float(np.dot(weights, values))


def _row_sqdist(X, C):
    diff = X - C
    return np.einsum("ij,ij->i", diff, diff, dtype=np.float64)


class InMemoryArrays:
    """:class:`~hkmeans.backends.protocol.PerRowArrays` for NumPy arrays, memory maps
    and (for rows) sparse CSR matrices."""

    lazy = False

    def validated(self, estimator, X, reset: bool, accept_sparse):
        if estimator is None:
            X = check_array(X, accept_sparse=accept_sparse, dtype=FLOAT_DTYPES, order="C")
        else:
            X = validate_data(estimator, X, accept_sparse=accept_sparse, dtype=FLOAT_DTYPES, order="C", reset=reset)
        if sparse.issparse(X) and not X.has_canonical_format:
            # entries stored twice are one value, their sum (as toarray reads them); the
            # kernels and the cosine norms read each stored entry as a value of its own
            X = X.copy()
            X.sum_duplicates()
        return X

    def normalized(self, X):
        return normalize(X) if sparse.issparse(X) else normalize_rows(X)

    def check_range(self, X, dtype, metric: str) -> None:
        refuse_out_of_range(X, dtype, metric)

    def in_dtype(self, X, dtype, metric: str):
        refuse_out_of_range(X, dtype, metric)
        return X.astype(dtype, copy=False)

    def distances(self, X, centers, client=None):
        return euclidean_distances(X, centers)

    def inertia(self, X, centers, labels, sample_weight=None, client=None) -> float:
        # one block of rows at a time (densified, for sparse X): no n x d temporary
        rows = (lambda r: X[r].toarray()) if sparse.issparse(X) else (lambda r: X[r])
        sq = np.concatenate([_row_sqdist(rows(r), centers[labels[r]]) for r in row_blocks(X)])
        return weighted_total(sq, sample_weight)

    def lookup(self, table, labels):
        return table[labels]

    def as_labels(self, a, name):
        a = np.asarray(a)
        if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
            raise ValueError(f"{name} must be a 1-D integer array, got shape {a.shape} and dtype {a.dtype}.")
        if a.size and a.min() < 0:
            raise ValueError(f"{name} has negative labels; labels must be cluster indices >= 0.")
        if a.size and a.dtype == np.uint64 and a.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} has labels above 2**63 - 1; labels must be cluster indices.")
        return np.ascontiguousarray(a, dtype=np.int64)

    def max_label(self, a) -> int | None:
        return int(a.max())

    def as_distances(self, d, shape):
        d = np.ascontiguousarray(d, dtype=np.float64)
        if d.shape != shape:
            raise ValueError(f"distances must have one entry per data point ({shape[0]}), got shape {d.shape}.")
        if not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValueError("distances must be finite and non-negative.")
        return d

    def counts(self, labels, k: int) -> np.ndarray:
        return np.bincount(labels, minlength=k).astype(np.int64)

    def sums(self, labels, weights, k: int) -> np.ndarray:
        return np.bincount(labels, weights=weights, minlength=k)

    def members(self, labels, k: int) -> tuple:
        return group_by_label(labels, k)

    def random_scores(self, rng, labels):
        return rng.random(labels.size)

    def pick(self, labels, k, take, scores, sizes, members) -> np.ndarray:
        offsets, order = members()
        return np.sort(pick_members(offsets, order, scores, take))

    def save(self, arrays: dict, file, folder) -> None:
        save_npz(file, **arrays)

    def gathered(self, a) -> np.ndarray:
        return np.asarray(a)

    def reduce_rows(self, a, leaf, combine, args):
        block = 1 << 20  # a memory map is read a block at a time
        starts = range(0, a.size, block) if a.size else [0]
        return combine([leaf(np.asarray(a[s : s + block]), s, *args) for s in starts])


IN_MEMORY = InMemoryArrays()
