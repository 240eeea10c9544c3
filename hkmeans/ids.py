"""Ids of the rows of an input: read from a file or a Parquet column, and checked.

Ids are one per row of the whole input (as the indices hkmeans writes are rows of the
whole input, a fit on a subset of the rows included), integers or strings, all
distinct. They come as a 1-D int64 or unicode (``<U``) array, which ``numpy.save``
writes without pickling.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from .io import InputError
from .readers import ParquetPool

TEXT = (".txt", ".csv")
DEFAULT_COLUMN = "id"


def load_ids(path) -> np.ndarray:
    """The ids in ``path``: a ``.npy`` array of integers or strings, or a text file
    (``.txt``, ``.csv``) of one id per line, taken as integers when every line is one;
    :class:`~hkmeans.io.InputError` of one line if it cannot be read."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: {'is a directory' if os.path.isdir(path) else 'no such file'}; give a file of ids.")
    try:
        if path.endswith(TEXT):
            with open(path, encoding="utf-8", newline="") as f:
                lines = f.read().splitlines()
            return _from_lines(path, lines)
        if not path.endswith(".npy"):
            raise InputError(f"{path}: ids are read from .npy, .txt or .csv files.")
        return np.load(path, allow_pickle=False)
    except PermissionError:
        raise InputError(f"{path}: not readable (permission denied).") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file of ids.") from None
    except (ValueError, OSError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a readable .npy array of ids ({first}).") from None


def _from_lines(path, lines):
    empty = [i for i, line in enumerate(lines) if not line.strip()]
    if empty:
        raise InputError(f"{path}: line {empty[0] + 1} is empty; give one id per line.")
    try:
        return np.array([int(line) for line in lines], dtype=np.int64)
    except (ValueError, OverflowError):
        return np.array(lines, dtype=np.str_)


def column_ids(pool, column=None):
    """The ids of a Parquet pool: its column ``column``, or ``id`` when it has one and
    no column is named; None for a pool without them."""
    if not isinstance(pool, ParquetPool):
        if column is not None:
            raise InputError("an id column is read only from Parquet input; give the ids as a file with --ids.")
        return None
    if column is None:
        if not pool.has_column(DEFAULT_COLUMN):
            return None
        column = DEFAULT_COLUMN
    return pool.read_column(column)


def check_ids(ids, n_rows: int, name: str) -> np.ndarray:
    """``ids`` as a 1-D int64 or unicode array if it holds ``n_rows`` distinct integers
    or strings; :class:`~hkmeans.io.InputError` of one line naming ``name`` otherwise."""
    ids = np.asarray(ids)
    if ids.dtype.kind == "O" and all(isinstance(v, str) for v in ids.ravel()):
        ids = ids.astype(np.str_)
    if ids.dtype.kind == "S":
        ids = np.char.decode(ids, "utf-8")
    if ids.ndim != 1 or ids.dtype.kind not in "iuU":
        raise InputError(f"{name}: ids must be a 1-D array of integers or strings, got shape {ids.shape} of {ids.dtype}.")
    if len(ids) != n_rows:
        raise InputError(f"{name}: {len(ids)} ids for an input of {n_rows} rows; give one id per row of the input.")
    if ids.dtype.kind == "u" and ids.size and ids.max() > np.iinfo(np.int64).max:
        raise InputError(f"{name}: ids above 2**63 - 1; give them as strings.")
    ids = ids.astype(np.int64) if ids.dtype.kind in "iu" else ids
    order = np.argsort(ids, kind="stable")
    same = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if same.size:
        a, b = sorted(order[same[0] : same[0] + 2])
        raise InputError(f"{name}: id {ids[a].item()!r} is given twice (rows {a} and {b}); ids must be distinct.")
    return ids


def digest(ids) -> str:
    """BLAKE2b (hex) of ``ids``' dtype and values: tells one set of ids from another."""
    h = hashlib.blake2b(np.asarray(ids).dtype.str.encode(), digest_size=16)
    h.update(np.ascontiguousarray(ids).tobytes())
    return h.hexdigest()
