"""Dask arrays read from and written to files chunk by chunk, by the workers.

:func:`pool_array` reads a :class:`~hkmeans.readers.Pool` (``.npy`` shards, Parquet,
zarr) lazily: each task reopens the source on its worker and reads its rows, so the
client never holds them. :func:`store` writes a per-row dask array as one ``.npy``
per chunk into a folder, from the workers; :func:`load` reads such a folder back as
a dask array. Workers must see the files at the same paths as the client (one
machine, or a shared file system).
"""

from __future__ import annotations

import functools
import os
import re
import shutil

import dask
import dask.array as da
import numpy as np

from .. import _config
from ..io import save_npy
from .dask import compute, persist


def chunk_rows(n_features, dtype) -> int:
    """Rows per chunk of :data:`hkmeans._config.DASK_CHUNK_BYTES`."""
    return max(1, _config.DASK_CHUNK_BYTES // max(1, n_features * np.dtype(dtype).itemsize))


@functools.lru_cache(maxsize=8)
def _open(source, column, subset_indices):
    from ..readers import open_pool

    return open_pool(source, column=column, subset_indices=subset_indices)


class _PoolRows:
    """The rows of a pool as an array-like that reads what it is sliced for: what
    :func:`dask.array.from_array` wraps, so that a chunk's read is part of the task
    that uses it (no read task of its own, whose 64 MB might land on another worker
    than the per-row state the next task also needs)."""

    ndim = 2

    def __init__(self, source, column, subset_indices, shape, dtype):
        self.source, self.column, self.subset_indices = source, column, subset_indices
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def __dask_tokenize__(self):
        return (type(self).__name__, self.source, self.column, self.subset_indices, self.shape, self.dtype.str)

    def __getitem__(self, key):
        rows, cols = key
        start, stop, _ = rows.indices(self.shape[0])
        block = _open(self.source, self.column, self.subset_indices).read(start, stop).astype(self.dtype, copy=False)
        return block[:, cols]


def pool_array(source, dtype, column=None, subset_indices=None, shape=None, rows=None):
    """The pool :func:`hkmeans.readers.open_pool` opens from ``source`` (a path;
    ``column`` and ``subset_indices`` as there) as a dask array of ``dtype``, in row
    chunks of ``rows`` (default :func:`chunk_rows`), each read inside the task that
    uses it. ``shape`` is the pool's (opened here if not given)."""
    source = os.path.abspath(os.fspath(source))
    subset = None if subset_indices is None else os.path.abspath(os.fspath(subset_indices))
    if shape is None:
        shape = _open(source, column, subset).shape
    n, d = map(int, shape)
    rows = chunk_rows(d, dtype) if rows is None else int(rows)
    return da.from_array(_PoolRows(source, column, subset, (n, d), dtype), chunks=(rows, d), asarray=False,
                         fancy=False, inline_array=True, meta=np.empty((0, d), dtype=dtype))


# ---------------------------------------------------------------------------
# per-row arrays in a folder, one file per chunk

_NAME = re.compile(r"(?P<name>\w+)-(?P<start>\d{12})-(?P<stop>\d{12})\.npy")


def _write(block, folder, name, block_info=None):
    start, stop = block_info[0]["array-location"][0]
    save_npy(os.path.join(folder, f"{name}-{start:012d}-{stop:012d}.npy"), block)
    return np.zeros(1, dtype=np.int8)


def store(folder, client=None, **arrays) -> None:
    """Write each 1-D dask array of ``arrays`` into ``folder`` (replaced if it exists),
    one ``NAME-START-STOP.npy`` per chunk, each written atomically by the worker that
    holds the chunk; returns once all are written."""
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    writes = [a.map_blocks(_write, folder, name, chunks=((1,) * a.numblocks[0],), dtype=np.int8,
                           meta=np.empty(0, np.int8)) for name, a in arrays.items()]
    compute(*writes, client=client)


def load(folder, client=None) -> dict:
    """The arrays :func:`store` wrote into ``folder``, as dask arrays persisted on the
    workers; a ValueError of one line if their chunks do not cover ``0..n`` in order."""
    found = {}
    for entry in sorted(os.listdir(folder)):
        m = _NAME.fullmatch(entry)
        if m:
            found.setdefault(m["name"], []).append((int(m["start"]), int(m["stop"]), os.path.join(folder, entry)))
    out = {}
    for name, parts in found.items():
        parts.sort()
        if parts[0][0] != 0 or any(a[1] != b[0] for a, b in zip(parts, parts[1:])):
            raise ValueError(f"{folder}: the chunks of {name} do not cover its rows; use --overwrite to start over.")
        dtype = np.load(parts[0][2], mmap_mode="r").dtype
        out[name] = da.concatenate([da.from_delayed(dask.delayed(np.load, pure=True)(path), shape=(b - a,), dtype=dtype)
                                    for a, b, path in parts])
    names = list(out)
    return dict(zip(names, persist(*out.values(), client=client)))
