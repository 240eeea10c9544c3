"""Pools of embeddings: the sources hkmeans reads, served chunk by chunk.

A :class:`Pool` is an ``(n, d)`` table of embeddings that is never loaded whole: it
says its shape, dtype and natural chunks (row boundaries) and reads any range of rows
on demand. :func:`open_pool` opens one from

- a ``.npy`` file (memory-mapped);
- a directory or a glob pattern of ``.npy`` shards, in natural order of their names
  (``shard_2`` before ``shard_10``);
- a zarr array (a directory store);
- Parquet files (a file, a directory or a glob) with a column of lists of numbers;

optionally restricted to a sorted list of rows. Every check of a source happens when
it is opened (or, for what only the values show, when its rows are read) and a source
that cannot be used raises :class:`~hkmeans.io.InputError` with a one-line message.
pyarrow and zarr are imported only when such a source is opened.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import os
import re
import zipfile

import numpy as np

from .io import InputError, block_rows, file_stat

NPY = (".npy",)
PARQUET = (".parquet", ".pq")
ZARR_MARKERS = ("zarr.json", ".zarray")  # zarr 3, zarr 2


class Pool:
    """Rows of embeddings, read on demand.

    Attributes
    ----------
    shape : tuple of int
        ``(n_samples, n_features)``.
    dtype : numpy.dtype
        The dtype as stored (float16/32/64 or integer).
    chunks : numpy.ndarray of int64
        Row boundaries of the natural units of the source, from 0 to ``n_samples``:
        chunk ``i`` is rows ``chunks[i]`` to ``chunks[i + 1]``.
    files : list of str
        The files the rows come from (for checks that nothing written replaces one).
    salt : bytes
        What, besides the rows, tells this input apart (hashed into its fingerprint).
    """

    shape: tuple
    dtype: np.dtype
    chunks: np.ndarray
    files: list
    salt = b""

    def read(self, start, stop) -> np.ndarray:
        """Rows ``[start, stop)`` as a C-ordered array in the stored dtype."""
        if not 0 <= start <= stop <= self.shape[0]:
            raise IndexError(f"rows [{start}, {stop}) out of range for {self.shape[0]} rows")
        return np.ascontiguousarray(self._read(int(start), int(stop)))

    def iter_chunks(self):
        """Yield ``(start, rows)`` for each chunk, in order."""
        for a, b in zip(self.chunks[:-1].tolist(), self.chunks[1:].tolist()):
            yield a, self.read(a, b)

    def describe(self) -> dict:
        """What a run manifest records of the source (paths, sizes, times): unchanged,
        the source is taken to be unchanged."""
        raise NotImplementedError

    def mapped(self):
        """The whole pool as one array without a copy (a memory map), or None."""
        return None

    def _read(self, start, stop):
        raise NotImplementedError


def open_pool(source, column=None, subset_indices=None) -> Pool:
    """Open a pool of embeddings.

    Parameters
    ----------
    source : str, os.PathLike or numpy.ndarray
        A ``.npy`` file; a directory or glob pattern of ``.npy`` shards or of Parquet
        files (``.parquet``, ``.pq``); a Parquet file; a zarr array's directory; or a
        2-D array already in memory.
    column : str, optional
        The Parquet column of embeddings (default: the only list-typed column).
    subset_indices : str, os.PathLike or array-like of int, optional
        Sorted, distinct row numbers (or a ``.npy`` file of them): the pool then
        presents only those rows, in that order.

    Returns
    -------
    Pool

    Raises
    ------
    hkmeans.io.InputError
        If the source cannot be used; the message says which file and why.
    """
    pool: Pool
    if isinstance(source, np.ndarray):
        name, pool = "array", ArrayPool(_checked("array", source))
    else:
        name = os.fspath(source)
        pool = _open_path(name, column)
    if column is not None and not isinstance(pool, ParquetPool):
        raise InputError(f"{name}: a column is chosen only in Parquet input; leave out column (--column).")
    if subset_indices is not None:
        pool = SubsetPool(pool, subset_indices)
    return pool


def _open_path(source, column):
    if os.path.isdir(source):
        if any(os.path.exists(os.path.join(source, m)) for m in ZARR_MARKERS):
            return ZarrPool(source)
        names = [os.path.join(source, n) for n in os.listdir(source) if not n.startswith(".")]
        return _open_files(source, [p for p in names if os.path.isfile(p)], column, "directory")
    if not os.path.exists(source) and any(c in source for c in "*?["):
        files = [p for p in glob.glob(source) if os.path.isfile(p)]  # folders left out, as in a directory
        return _open_files(source, files, column, "pattern")
    if source.endswith(PARQUET):
        return ParquetPool(source, [source], column)
    return NpyPool(source)


def _open_files(source, paths, column, what):
    npy = sorted((p for p in paths if p.endswith(NPY)), key=natural_key)
    parquet = sorted((p for p in paths if p.endswith(PARQUET)), key=natural_key)
    if npy and parquet:
        raise InputError(
            f"{source}: holds both .npy and Parquet files; give one kind (a glob such as '{source}/*.npy')."
        )
    if not npy and not parquet:
        raise InputError(
            f"{source}: {'empty directory' if what == 'directory' else 'no file matches'}: "
            "no .npy or Parquet (.parquet, .pq) files."
        )
    return ShardsPool(source, npy) if npy else ParquetPool(source, parquet, column)


def natural_key(path):
    """Sort key of a file name with its runs of digits as numbers: ``shard_2`` before
    ``shard_10``."""
    return [int(part) if part.isdecimal() else part for part in re.split(r"(\d+)", os.path.basename(path))], path


def _import(module, extra, source):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"{source}: reading it needs {module.split('.')[0]}: pip install 'hkmeans[{extra}]'."
        ) from None


def _blocks(offsets, sizes, step):
    """Boundaries of parts at ``offsets`` of ``sizes`` rows, each cut in blocks of
    ``step`` rows."""
    starts = [off + np.arange(0, size, step) for off, size in zip(offsets, sizes)]
    return np.concatenate([*starts, [sum(sizes)]]).astype(np.int64)


def _checked(name, X, rows_needed=True):
    """``X`` if it is a 2-D numeric array with columns (and, with ``rows_needed``,
    rows); :class:`InputError` otherwise."""
    shape, dtype = tuple(X.shape), np.dtype(X.dtype)
    if dtype.kind not in "fiu":
        raise InputError(f"{name}: dtype {dtype} is not numeric; expected float or integer embeddings.")
    if len(shape) != 2:
        raise InputError(f"{name}: array of shape {shape}; expected 2-D (n_samples, n_features).")
    if shape[1] == 0 or (rows_needed and shape[0] == 0):
        raise InputError(f"{name}: empty array of shape {shape}.")
    return X


def load_npy(path, mmap_mode="r"):
    """``path`` memory-mapped read-only (read into memory for ``mmap_mode=None``);
    :class:`InputError` if it is not a ``.npy`` array."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a .npy file.")
    try:
        X = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except PermissionError:
        raise InputError(f"{path}: not readable (permission denied).") from None
    except zipfile.BadZipFile as e:  # numpy reads a file starting with "PK" as an .npz archive
        raise InputError(f"{path}: a damaged .npz archive, not a .npy array ({e}).") from None
    except (ValueError, OSError, EOFError) as e:
        with open(path, "rb") as f:
            head = f.read(6)
        if head and head != b"\x93NUMPY" and not head.startswith(b"PK"):  # numpy reads others as pickles
            raise InputError(f"{path}: not a .npy file (numpy.save writes one).") from None
        if "allow_pickle" in str(e) or "Python objects" in str(e):  # not numpy's advice to unpickle it
            raise InputError(
                f"{path}: a .npy array of Python objects, which are never unpickled; save numbers or strings."
            ) from None
        raise InputError(f"{path}: not a readable .npy array ({e}).") from None
    if not isinstance(X, np.ndarray):  # an .npz archive
        X.close()
        raise InputError(f"{path}: an .npz archive; save one array with numpy.save.")
    return X


def open_embeddings(path) -> np.ndarray:
    """Memory-map a 2-D numeric ``.npy`` file read-only; :class:`InputError` if it
    is missing, unreadable or not such an array."""
    return _checked(path, load_npy(os.fspath(path)))


def _files_record(source, paths):
    return {"path": os.path.abspath(source), "files": [{"path": os.path.abspath(p), **file_stat(p)} for p in paths]}


class ArrayPool(Pool):
    """A 2-D array (in memory or memory-mapped), in blocks of 32 MB."""

    def __init__(self, X):
        self._X = X
        self.shape = tuple(map(int, X.shape))
        self.dtype = X.dtype
        self.chunks = _blocks([0], [self.shape[0]], block_rows(self))
        self.files = []

    def _read(self, start, stop):
        return self._X[start:stop]

    def mapped(self):
        return self._X

    def describe(self):
        return {"path": "<array>"}


class NpyPool(ArrayPool):
    """One ``.npy`` file, memory-mapped."""

    def __init__(self, path):
        super().__init__(open_embeddings(path))
        self.files = [path]

    def describe(self):
        return {"path": os.path.abspath(self.files[0]), "stat": file_stat(self.files[0])}


class _PartsPool(Pool):
    """Consecutive parts (shards, row groups) of ``sizes`` rows; subclasses read rows
    ``[a, b)`` of part ``i`` in :meth:`_part`."""

    def _set_parts(self, sizes):
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def _read(self, start, stop):
        first = int(np.searchsorted(self._offsets, start, side="right")) - 1
        pieces = []
        for i in range(max(first, 0), len(self._offsets) - 1):
            lo, hi = self._offsets[i], self._offsets[i + 1]
            if lo >= stop:
                break
            if hi > max(start, lo):  # a part of no rows is not read
                pieces.append(self._part(i, max(start, lo) - lo, min(stop, hi) - lo))
        if not pieces:
            return np.empty((0, self.shape[1]), self.dtype)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _part(self, i, a, b):
        raise NotImplementedError


class ShardsPool(_PartsPool):
    """``.npy`` shards of one width and dtype, one after the other; each shard is
    memory-mapped only while it is read, so that thousands of them hold no file open.
    A shard of no rows adds none (as an empty Parquet file does); all of them empty
    is an :class:`InputError`."""

    def __init__(self, source, paths):
        self.source, self.files = source, paths
        shapes = []
        for path in paths:
            X = _checked(path, load_npy(path), rows_needed=False)
            if shapes and (X.shape[1], X.dtype) != (shapes[0][1], self.dtype):
                raise InputError(
                    f"{path}: {X.shape[1]} columns of {X.dtype}, but {paths[0]} has {shapes[0][1]} of {self.dtype}; "
                    "shards must share width and dtype."
                )
            shapes.append(X.shape)
            self.dtype = X.dtype
            del X
        sizes = [s[0] for s in shapes]
        if not sum(sizes):
            raise InputError(f"{source}: no rows.")
        self.shape = (int(sum(sizes)), int(shapes[0][1]))
        self._set_parts(sizes)
        # a memory map reads any rows alike: a shard larger than a block is cut in blocks
        self.chunks = _blocks(self._offsets[:-1], sizes, block_rows(self))

    def _part(self, i, a, b):
        return np.array(open_embeddings(self.files[i])[a:b], order="C")  # a copy: the map closes

    def describe(self):
        return _files_record(self.source, self.files)


class ParquetPool(_PartsPool):
    """Parquet files with a column of lists of numbers (fixed-size or not), one row
    group at a time."""

    def __init__(self, source, paths, column):
        self._pa = _import("pyarrow", "parquet", source)
        pq = _import("pyarrow.parquet", "parquet", source)
        self.source, self.files = source, paths
        self._meta, groups, kind = [], [], None
        for f, path in enumerate(paths):
            if not os.path.isfile(path):
                raise InputError(f"{path}: no such file.")
            try:
                pf = pq.ParquetFile(path)
            except (self._pa.ArrowException, OSError) as e:
                raise InputError(f"{path}: not a readable Parquet file ({_first_line(e)}).") from None
            if f == 0:
                self.column = column = self._column(path, pf.schema_arrow, column)
            elif column in pf.schema_arrow.names:
                _check_column_name(path, pf.schema_arrow, column)
            field = pf.schema_arrow.field(column) if column in pf.schema_arrow.names else None
            if field is None or (kind is not None and field.type != kind):
                raise InputError(
                    f"{path}: column {column!r} is {field.type if field else 'missing'} here "
                    f"but {kind} in {paths[0]}; the files must share it."
                )
            kind = field.type
            self._meta.append(pf.metadata)
            groups += [(f, g, pf.metadata.row_group(g).num_rows) for g in range(pf.metadata.num_row_groups)]
        self._groups = [(f, g) for f, g, rows in groups if rows > 0]
        sizes = [rows for _, _, rows in groups if rows > 0]
        if not sizes:
            raise InputError(f"{source}: no rows.")
        self.dtype = np.dtype(kind.value_type.to_pandas_dtype())
        self._width = kind.list_size if self._pa.types.is_fixed_size_list(kind) else None
        self._set_parts(sizes)
        self._width = self._width or self._part(0, 0, 1).shape[1]
        self.shape = (int(self._offsets[-1]), int(self._width))
        self.chunks = self._offsets

    def _column(self, path, schema, column):
        """The embeddings column: ``column``, or the only list-typed one."""
        types = self._pa.types
        lists = [
            f.name
            for f in schema
            if types.is_list(f.type) or types.is_large_list(f.type) or types.is_fixed_size_list(f.type)
        ]
        if column is None:
            if len(lists) != 1:
                found = (
                    f"list-typed columns {', '.join(lists)}"
                    if lists
                    else f"no list-typed column (columns: {', '.join(schema.names)})"
                )
                raise InputError(f"{path}: {found}; name the embeddings column with column (--column).")
            column = lists[0]
        _check_column_name(path, schema, column)
        kind = schema.field(column).type
        if column not in lists or not (types.is_floating(kind.value_type) or types.is_integer(kind.value_type)):
            raise InputError(f"{path}: column {column!r} is {kind}, not lists of numbers.")
        return column

    def _part(self, i, a, b):
        f, g = self._groups[i]
        path = self.files[f]
        pq = importlib.import_module("pyarrow.parquet")
        try:
            values = pq.ParquetFile(path, metadata=self._meta[f]).read_row_group(g, columns=[self.column]).column(0)
        except (self._pa.ArrowException, OSError) as e:
            raise InputError(f"{path}: row group {g} cannot be read ({_first_line(e)}).") from None
        return _to_numpy(values.combine_chunks(), self._width, path, self._offsets[i])[a:b]

    def describe(self):
        return {**_files_record(self.source, self.files), "column": self.column}

    def has_column(self, name) -> bool:
        """Whether a file that holds rows (the first file, when none does) has a
        column ``name``: a file of no rows decides nothing, whatever its place."""
        holding = [f for f, meta in enumerate(self._meta) if meta.num_rows > 0] or [0]
        return any(name in self._meta[f].schema.to_arrow_schema().names for f in holding)

    def read_column(self, name, nulls=False) -> np.ndarray:
        """Column ``name`` of every file that holds rows, in order, one value per row,
        row group by row group; :class:`InputError` if such a file lacks it or it
        holds lists, or nulls unless ``nulls`` (then None, or NaN in a numeric column)."""
        pq = importlib.import_module("pyarrow.parquet")
        parts = []
        for f, path in enumerate(self.files):
            if self._meta[f].num_rows == 0:  # adds no values, whatever its columns
                continue
            schema = self._meta[f].schema.to_arrow_schema()
            _check_column_name(path, schema, name)
            kind = schema.field(name).type
            if self._pa.types.is_nested(kind):
                raise InputError(f"{path}: column {name!r} is {kind}, not one value per row.")
            pf = pq.ParquetFile(path, metadata=self._meta[f])
            for g in range(self._meta[f].num_row_groups):
                try:
                    values = pf.read_row_group(g, columns=[name]).column(0)
                except (self._pa.ArrowException, OSError) as e:
                    raise InputError(f"{path}: row group {g} cannot be read ({_first_line(e)}).") from None
                if values.null_count and not nulls:
                    raise InputError(f"{path}: column {name!r} holds nulls in row group {g}; every row needs a value.")
                parts.append(values.to_numpy())
        return np.concatenate(parts) if parts else np.empty(0)


def _check_column_name(path, schema, name) -> None:
    """An :class:`InputError` unless the Parquet ``schema`` has one column ``name``
    (pyarrow writes files with a name given to several columns)."""
    count = schema.names.count(name)
    if count == 0:
        raise InputError(f"{path}: no column {name!r}; columns: {', '.join(schema.names)}.")
    if count > 1:
        raise InputError(f"{path}: {count} columns are named {name!r}; rename them apart.")


def _to_numpy(lists, width, path, first_row):
    """A pyarrow list array of ``width`` numbers per row (the most common length of
    its rows if None) as a 2-D array, without a Python loop over rows."""
    if lists.null_count:
        row = first_row + int(np.argmax(lists.is_null().to_numpy(zero_copy_only=False)))
        raise InputError(f"{path}: row {row} is null; every row needs an embedding.")
    if hasattr(lists, "offsets"):  # variable-size lists: every one must have the same length
        lengths = np.diff(lists.offsets.to_numpy())
        if width is None:  # the most common length: the odd row is blamed
            values, counts = np.unique(lengths, return_counts=True)
            width = int(values[counts.argmax()])
        bad = np.flatnonzero(lengths != width)
        if bad.size:
            raise InputError(
                f"{path}: row {first_row + int(bad[0])} has {lengths[bad[0]]} values, "
                f"not {width}; embeddings of mixed lengths."
            )
    values = lists.flatten()
    if values.null_count:
        raise InputError(
            f"{path}: null values inside the embeddings of rows {first_row} to {first_row + len(lists) - 1}."
        )
    if width == 0:
        raise InputError(f"{path}: embeddings of length 0.")
    return values.to_numpy(zero_copy_only=False).reshape(len(lists), width)


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class ZarrPool(Pool):
    """A 2-D zarr array in a directory store, one chunk (or shard) of rows at a time."""

    def __init__(self, path):
        zarr = _import("zarr", "zarr", path)
        try:
            self._z = zarr.open_array(path, mode="r")
        except (ValueError, OSError, KeyError) as e:
            raise InputError(f"{path}: not a readable zarr array ({_first_line(e)}).") from None
        _checked(path, self._z)
        self.path, self.files = path, [path]
        self.dtype = np.dtype(self._z.dtype)
        self.shape = tuple(map(int, self._z.shape))
        rows = (getattr(self._z, "shards", None) or self._z.chunks)[0]
        self.chunks = _blocks([0], [self.shape[0]], rows)

    def _read(self, start, stop):
        try:
            return self._z[start:stop]
        except (RuntimeError, ValueError, TypeError, KeyError, OSError) as e:  # a damaged chunk: its codec's error
            raise InputError(f"{self.path}: rows {start} to {stop} cannot be read ({_first_line(e)}).") from None

    def describe(self):
        stats = [os.stat(os.path.join(root, name)) for root, _, names in os.walk(self.path) for name in names]
        return {
            "path": os.path.abspath(self.path),
            "stat": {
                "n_files": len(stats),
                "size": sum(s.st_size for s in stats),
                "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
            },
        }


def subset_rows(indices, n=None):
    """Row numbers of a subset, checked: a 1-D integer array (or ``.npy`` file of
    one), non-empty, strictly increasing and, given ``n``, below ``n``. Returns the
    int64 array and its digest (BLAKE2b, hex)."""
    name = os.fspath(indices) if isinstance(indices, (str, os.PathLike)) else "subset indices"
    idx = load_npy(name) if name != "subset indices" else np.asarray(indices)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise InputError(
            f"{name}: subset indices must be a 1-D array of integers, got shape {idx.shape} of {idx.dtype}."
        )
    if idx.size == 0:
        raise InputError(f"{name}: no subset indices.")
    if idx.dtype.kind == "u" and idx.max() > np.iinfo(np.int64).max:
        raise InputError(f"{name}: subset index {idx.max()} out of range.")
    idx = np.asarray(idx, dtype=np.int64)
    steps = np.diff(idx)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        why = "listed twice" if steps[i] == 0 else f"after {idx[i]}: not sorted"
        raise InputError(
            f"{name}: row {idx[i + 1]} at position {i + 1} {why}; subset indices must be sorted and distinct."
        )
    if idx[0] < 0:
        raise InputError(f"{name}: subset index {idx[0]} is negative.")
    if n is not None and idx[-1] >= n:
        raise InputError(f"{name}: subset index {idx[-1]} out of range for a pool of {n} rows.")
    return idx, hashlib.blake2b(idx.astype("<i8").tobytes(), digest_size=16).hexdigest()


class SubsetPool(Pool):
    """The rows of ``base`` listed in ``indices`` (sorted, distinct), in that order;
    chunks follow the base's, so each read touches one base chunk at a time."""

    def __init__(self, base, indices):
        self.base = base  # the whole input
        self._idx, digest = subset_rows(indices, base.shape[0])
        self.shape = (len(self._idx), base.shape[1])
        self.dtype = base.dtype
        self.chunks = np.unique(np.searchsorted(self._idx, base.chunks)).astype(np.int64)
        path = os.fspath(indices) if isinstance(indices, (str, os.PathLike)) else None
        self.files = base.files + ([path] if path else [])
        self.salt = digest.encode()
        self._record = {
            "path": os.path.abspath(path) if path else "<array>",
            "digest": digest,
            **(file_stat(path) if path else {}),
        }

    @property
    def rows(self) -> np.ndarray:
        """The rows of the base pool this pool presents, sorted (int64)."""
        return self._idx

    def _read(self, start, stop):
        rows = self._idx[start:stop]
        cuts = np.searchsorted(rows, self.base.chunks[1:-1])
        pieces = []
        for group in np.split(rows, cuts):
            if group.size:
                lo = int(group[0])
                pieces.append(self.base.read(lo, int(group[-1]) + 1)[group - lo])
        if not pieces:
            return np.empty((0, self.shape[1]), self.dtype)
        return np.concatenate(pieces)

    def describe(self):
        return {**self.base.describe(), "subset_indices": self._record}
