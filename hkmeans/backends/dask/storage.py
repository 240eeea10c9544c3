"""Dask arrays read from and written to files chunk by chunk, by the workers.

:func:`pool_array` reads a :class:`~hkmeans.readers.Pool` (``.npy`` shards, Parquet,
zarr) lazily: each task reopens the source on its worker and reads its rows, so the
client never holds them. :func:`store` writes a per-row dask array as one ``.npy``
per chunk into a folder, from the workers; :func:`load` reads such a folder back as
a dask array. :func:`spill` does both in a scratch folder: per-row state kept on
disk rather than in the workers' memory, read back chunk by chunk. Workers must see
the files at the same paths as the client (one machine, or a shared file system).

The Dask backend's passes read the arrays :func:`pool_array`, :func:`spill` and
:func:`map_rows` make inside their own tasks (see :func:`source_of`): a worker holds
the chunks it is working on, not chunks read ahead of the tasks that need them.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import tempfile
import weakref

import dask
import dask.array as da
import numpy as np

from ... import _config
from ...io import save_npy
from ...readers import open_pool
from .client import compute, persist


def chunk_rows(n_features, dtype) -> int:
    """Rows per chunk of :data:`hkmeans._config.DASK_CHUNK_BYTES`."""
    return max(1, _config.DASK_CHUNK_BYTES // max(1, n_features * np.dtype(dtype).itemsize))


# The array-like each array read by its tasks wraps, and its graph layer, by the
# array's name (a persisted copy has the name and another layer: it is not read).
_SOURCES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_LAYERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def rows_array(source, chunks):
    """A dask array over ``source`` (an array-like that reads the rows it is sliced
    for) in row chunks ``chunks``, whose source :func:`source_of` finds."""
    out = da.from_array(
        source,
        chunks=chunks,
        asarray=False,
        fancy=False,
        inline_array=True,
        meta=np.empty((0,) * len(source.shape), dtype=source.dtype),
    )
    _SOURCES[out.name], _LAYERS[out.name] = source, out.dask.layers[out.name]
    return out


def source_of(array):
    """The array-like that ``array`` reads its rows from, if :func:`rows_array` made
    it (and it is not persisted), else None: what the Dask backend's passes read
    inside their own tasks. Dask fuses a chunk's read into the task that uses it only
    when that task takes no other dependency (the centroids as a ``Delayed``, a
    second array); a read left as a task of its own is cheap, so the scheduler runs
    reads ahead of the slow passes and a worker holds many chunks."""
    if not isinstance(array, da.Array) or _LAYERS.get(array.name) is not array.dask.layers.get(array.name):
        return None
    return _SOURCES.get(array.name)


def read_rows(source, start, stop) -> np.ndarray:
    """Rows ``start:stop`` of an array-like ``source``."""
    return source[(slice(start, stop),) + (slice(None),) * (len(source.shape) - 1)]


class _MappedRows:
    """``fn`` of the rows of an array-like ``source``, as an array-like (``fn`` maps
    each row on its own: normalisation, say)."""

    def __init__(self, source, fn):
        self.source, self.fn = source, fn
        self.shape, self.dtype, self.ndim = source.shape, source.dtype, len(source.shape)

    def __dask_tokenize__(self):
        return (type(self).__name__, dask.base.tokenize(self.source), dask.base.tokenize(self.fn))

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        start, stop, _ = key[0].indices(self.shape[0])
        return self.fn(read_rows(self.source, start, stop))[(slice(None), *key[1:])]


def map_rows(array, fn):
    """``fn`` (a function of rows, each on its own) over the row chunks of ``array``:
    an array read by its tasks (see :func:`source_of`) if ``array`` is."""
    source = source_of(array)
    if source is None:
        return array.map_blocks(fn, dtype=array.dtype)
    return rows_array(_MappedRows(source, fn), array.chunks)


@functools.lru_cache(maxsize=8)
def _open(source, column, subset_indices, stamps=None):
    """The pool, opened once per worker for each version of its files: ``stamps``
    (see :func:`_stamp`) is only part of the cache key."""
    return open_pool(source, column=column, subset_indices=subset_indices)


def _stamp(path):
    """What tells one version of the file at ``path`` from another (a file replaced
    atomically is a new inode), or None for a folder, a glob or no path."""
    try:
        st = os.stat(path)
    except (OSError, TypeError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


class _PoolRows:
    """The rows of a pool as an array-like that reads what it is sliced for (the
    source of :func:`pool_array`'s arrays, see :func:`rows_array`)."""

    ndim = 2

    def __init__(self, source, column, subset_indices, stamps, shape, dtype):
        self.source, self.column, self.subset_indices = source, column, subset_indices
        # a file rewritten at the same path (a rerun's subset) is another array, on
        # the workers (their cache of open pools) as in the graph
        self.stamps = stamps
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def __dask_tokenize__(self):
        return (
            type(self).__name__,
            self.source,
            self.column,
            self.subset_indices,
            self.stamps,
            self.shape,
            self.dtype.str,
        )

    def __getitem__(self, key):
        rows, cols = key
        start, stop, _ = rows.indices(self.shape[0])
        pool = _open(self.source, self.column, self.subset_indices, self.stamps)
        return pool.read(start, stop).astype(self.dtype, copy=False)[:, cols]


def pool_array(source, dtype, column=None, subset_indices=None, shape=None, rows=None):
    """The pool :func:`hkmeans.readers.open_pool` opens from ``source`` (a path;
    ``column`` and ``subset_indices`` as there) as a dask array of ``dtype``, in row
    chunks of ``rows`` (default :func:`chunk_rows`), each read inside the task that
    uses it. ``shape`` is the pool's (opened here if not given)."""
    source = os.path.abspath(os.fspath(source))
    subset = None if subset_indices is None else os.path.abspath(os.fspath(subset_indices))
    stamps = (_stamp(source), _stamp(subset))
    if shape is None:
        shape = _open(source, column, subset, stamps).shape
    n, d = map(int, shape)
    rows = chunk_rows(d, dtype) if rows is None else int(rows)
    return rows_array(_PoolRows(source, column, subset, stamps, (n, d), dtype), (rows, d))


# ---------------------------------------------------------------------------
# per-row arrays in a folder, one file per chunk

_NAME = re.compile(r"(?P<name>\w+)-(?P<start>\d{12})-(?P<stop>\d{12})\.npy")


def _chunk_file(folder, name, start, stop) -> str:
    return os.path.join(folder, f"{name}-{start:012d}-{stop:012d}.npy")


def _write(block, folder, name, durable=True, block_info=None):
    path = _chunk_file(folder, name, *block_info[0]["array-location"][0])
    (save_npy if durable else save_scratch)(path, block)
    return np.zeros(1, dtype=np.int8)


def save_scratch(path, array) -> None:
    """``np.save`` to ``path``, atomically but not flushed to disk: for files that a
    rerun recomputes (the folder is made if missing)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_npy(path, array, fsync=False)


def _writes(arrays, folder, durable):
    """Tasks writing each dask array of ``arrays`` (a dict by name) as one file per chunk."""
    return [
        a.map_blocks(
            _write,
            folder,
            name,
            durable,
            chunks=((1,) * a.numblocks[0],),
            drop_axis=list(range(1, a.ndim)),
            dtype=np.int8,
            meta=np.empty(0, np.int8),
        )
        for name, a in arrays.items()
    ]


def store(folder, client=None, **arrays) -> None:
    """Write each 1-D dask array of ``arrays`` into ``folder`` (replaced if it exists),
    one ``NAME-START-STOP.npy`` per chunk, each written atomically by the worker that
    holds the chunk; returns once all are written."""
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    compute(*_writes(arrays, folder, True), client=client)


def load(folder, client=None, n_rows=None) -> dict:
    """The arrays :func:`store` wrote into ``folder``, as dask arrays persisted on the
    workers; a ValueError of one line if their chunks do not cover ``0..n`` in order
    (``n``: ``n_rows`` if given, so that a lost last chunk is seen too)."""
    found: dict = {}
    for entry in sorted(os.listdir(folder)):
        m = _NAME.fullmatch(entry)
        if m:
            found.setdefault(m["name"], []).append((int(m["start"]), int(m["stop"]), os.path.join(folder, entry)))
    out = {}
    for name, parts in found.items():
        parts.sort()
        ends = parts[0][0] != 0 or n_rows is not None and parts[-1][1] != n_rows
        if ends or any(a[1] != b[0] for a, b in zip(parts, parts[1:])):
            raise ValueError(f"{folder}: the chunks of {name} do not cover its rows; use --overwrite to start over.")
        dtype = np.load(parts[0][2], mmap_mode="r").dtype
        out[name] = da.concatenate(
            [
                da.from_delayed(dask.delayed(np.load, pure=True)(path), shape=(b - a,), dtype=dtype)
                for a, b, path in parts
            ]
        )
    names = list(out)
    return dict(zip(names, persist(*out.values(), client=client)))


# ---------------------------------------------------------------------------
# per-row state in a scratch folder


class _ChunkFiles:
    """Arrays in one ``.npy`` per row chunk, as an array-like that reads the files of
    the rows it is sliced for (the source of :func:`spill`'s arrays, see
    :func:`rows_array`). The client's object holds the folder's
    owner; the copies sent to the workers do not."""

    def __init__(self, paths, chunks, shape, dtype, owner=None):
        self.paths = tuple(paths)
        self.starts = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self._owner = owner

    def __getstate__(self):
        return {**self.__dict__, "_owner": None}

    def __dask_tokenize__(self):
        return (type(self).__name__, self.paths, self.shape, self.dtype.str)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        start, stop, _ = key[0].indices(self.shape[0])
        if stop <= start:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)[(slice(None), *key[1:])]
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        last = max(first + 1, int(np.searchsorted(self.starts, stop, side="left")))
        parts = [np.load(self.paths[i]) for i in range(first, min(last, len(self.paths)))]
        block = parts[0] if len(parts) == 1 else np.concatenate(parts)
        offset = int(self.starts[first])
        return block[(slice(start - offset, stop - offset), *key[1:])]


class _Owner:
    """Removes ``folder`` when no array reads it any more (or at exit)."""

    def __init__(self, folder):
        self.folder = folder
        weakref.finalize(self, shutil.rmtree, folder, True)


def spill(scratch, *arrays, client=None) -> tuple:
    """``arrays`` (dask arrays chunked by rows only) written by the workers into a new
    folder in ``scratch``, one file per chunk, and read back lazily: dask arrays each
    of whose tasks reads its chunk's file. The folder is removed once none of them is
    referenced any more. What :meth:`~hkmeans.backends.dask.DaskBackend` keeps instead
    of persisting in the workers' memory."""
    os.makedirs(scratch, exist_ok=True)
    owner = _Owner(tempfile.mkdtemp(prefix="rows-", dir=scratch))
    named = {f"a{i}": a for i, a in enumerate(arrays)}
    compute(*_writes(named, owner.folder, False), client=client)
    out = []
    for name, a in named.items():
        starts = np.concatenate([[0], np.cumsum(a.chunks[0])])
        paths = [_chunk_file(owner.folder, name, int(b), int(e)) for b, e in zip(starts, starts[1:])]
        files = _ChunkFiles(paths, a.chunks[0], a.shape, a.dtype, owner)
        out.append(rows_array(files, a.chunks))
    return tuple(out)
