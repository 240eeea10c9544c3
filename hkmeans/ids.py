"""Ids of the rows of an input: read from a file or a Parquet column, and checked.

Ids are one per row of the whole input (as the indices hkmeans writes are rows of the
whole input, a fit on a subset of the rows included), integers or strings, all
distinct. Integer ids are a 1-D int64 array. String ids are a 1-D object array of
``str``, kept exactly (NUL and any Unicode) in memory linear in their total length, and
written without pickling as UTF-8 bytes plus offsets (:func:`encode`): a fixed-width
``<U`` array would cost the longest id times the number of rows and drop trailing NULs.
"""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np

from .io import InputError
from .readers import ParquetPool, load_npy

TEXT = (".txt", ".csv")
DEFAULT_COLUMN = "id"


def load_ids(path) -> np.ndarray:
    """The ids in ``path``: a ``.npy`` array of integers or strings, or a text file
    (``.txt``, ``.csv``, UTF-8 with or without a BOM) of one id per line, taken as
    integers when every line is one in ASCII digits (``42``, ``-7``, ``007``);
    :class:`~hkmeans.io.InputError` of one line if it cannot be read."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: {'is a directory' if os.path.isdir(path) else 'no such file'}; give a file of ids.")
    text = path.endswith(TEXT)
    if not text and not path.endswith(".npy"):
        raise InputError(f"{path}: ids are read from .npy, .txt or .csv files.")
    try:
        if text:
            return _from_lines(path, text_lines(path))
        return load_npy(path, mmap_mode=None)
    except InputError:  # already one line naming the file
        raise
    except PermissionError:
        raise InputError(f"{path}: not readable (permission denied).") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a UTF-8 text file of ids (byte {e.start} cannot be decoded).") from None
    except (ValueError, OSError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kind = "text file of ids, one per line" if text else ".npy array of ids"
        raise InputError(f"{path}: not a readable {kind} ({first}).") from None


def text_lines(path) -> list:
    """The lines of the UTF-8 text file ``path`` (with or without a BOM), ended by
    ``\\n`` or ``\\r\\n`` only (other line-break characters stay inside a value),
    trailing empty lines dropped."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        lines = [line.removesuffix("\r") for line in f.read().split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _from_lines(path, lines):
    """One id per line of ``lines`` (see :func:`text_lines`)."""
    empty = [i for i, line in enumerate(lines) if not line.strip()]
    if empty:
        raise InputError(f"{path}: line {empty[0] + 1} is empty; give one id per line.")
    if all(_INTEGER.fullmatch(line) for line in lines):
        try:
            return np.array([int(line) for line in lines], dtype=np.int64)
        except OverflowError:
            pass
    return _strings(lines)


#: A line read as an integer id: ASCII digits after an optional sign (``007`` is 7, as
#: pandas and NumPy read it), no space, ``_`` separator or other script's digits.
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _strings(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


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
    """``ids`` as a 1-D int64 array or object array of ``str`` if it holds ``n_rows``
    distinct integers or strings; :class:`~hkmeans.io.InputError` of one line naming
    ``name`` otherwise."""
    if not isinstance(ids, np.ndarray) and np.asarray(ids).dtype.kind == "U":
        ids = _strings(list(ids))  # not through a fixed-width array, which drops trailing NULs
    ids = np.asarray(ids)
    if ids.dtype.kind == "S":
        try:
            ids = _strings([v.decode("utf-8") for v in ids.ravel()]).reshape(ids.shape)
        except UnicodeDecodeError:
            raise InputError(f"{name}: byte-string ids that are not UTF-8; give them as text.") from None
    elif ids.dtype.kind == "U":
        ids = ids.astype(object)
    if ids.dtype.kind == "O" and not all(isinstance(v, str) for v in ids.ravel()):
        kinds = sorted({type(v).__name__ for v in ids.ravel() if not isinstance(v, str)})
        raise InputError(f"{name}: ids must be integers or strings, got values of type {', '.join(kinds)}.")
    if ids.dtype.kind == "O" and ids.ndim == 1:
        _refuse_surrogates(ids, name)
    if ids.ndim != 1 or ids.dtype.kind not in "iuO":
        raise InputError(
            f"{name}: ids must be a 1-D array of integers or strings, got shape {ids.shape} of {ids.dtype}."
        )
    if len(ids) != n_rows:
        raise InputError(f"{name}: {len(ids)} ids for an input of {n_rows} rows; give one id per row of the input.")
    if ids.dtype.kind == "u" and ids.size and ids.max() > np.iinfo(np.int64).max:
        raise InputError(f"{name}: ids above 2**63 - 1; give them as strings.")
    ids = ids.astype(np.int64, copy=False) if ids.dtype.kind in "iu" else ids
    twice = first_repeat(ids)
    if twice is not None:
        a, b = twice
        value = ids[a].item() if isinstance(ids[a], np.generic) else ids[a]
        raise InputError(f"{name}: id {value!r} is given twice (rows {a} and {b}); ids must be distinct.")
    return ids


def _refuse_surrogates(ids, name) -> None:
    """An :class:`~hkmeans.io.InputError` naming the first id that is not valid
    Unicode (a lone surrogate, which no UTF-8 output can hold)."""
    try:
        "".join(ids).encode("utf-8")
    except UnicodeEncodeError:
        row = next(i for i, v in enumerate(ids) if not _encodes(v))
        raise InputError(
            f"{name}: id at row {row} ({ids[row]!a}) is not valid Unicode (a lone surrogate); give UTF-8 text."
        ) from None


def _encodes(value) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def first_repeat(ids):
    """``(a, b)``, rows ``a < b`` holding the same id (the first such ``b``), or None."""
    if ids.dtype.kind != "O":
        order = np.argsort(ids, kind="stable")
        same = np.flatnonzero(ids[order][1:] == ids[order][:-1])
        return None if same.size == 0 else tuple(sorted(int(r) for r in order[same[0] : same[0] + 2]))
    seen = {}
    for row, value in enumerate(ids):
        if seen.setdefault(value, row) != row:
            return seen[value], row
    return None


def encode(ids) -> tuple[np.ndarray, np.ndarray]:
    """String ids as ``(offsets, data)``: int64 offsets (one more than the ids) into
    ``data``, their UTF-8 bytes end to end (surrogates kept as they are)."""
    parts = [v.encode("utf-8", "surrogatepass") for v in ids]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return offsets, np.frombuffer(b"".join(parts), dtype=np.uint8)


def decode(offsets, data) -> np.ndarray:
    """The inverse of :func:`encode`; ``ValueError`` if they do not fit together."""
    offsets = np.asarray(offsets)
    if (
        offsets.ndim != 1
        or offsets.size == 0
        or offsets[0] != 0
        or offsets[-1] != len(data)
        or np.any(np.diff(offsets) < 0)
    ):
        raise ValueError("offsets do not fit the data")
    raw = np.asarray(data, dtype=np.uint8).tobytes()
    bounds = offsets.tolist()
    return _strings([raw[a:b].decode("utf-8", "surrogatepass") for a, b in zip(bounds[:-1], bounds[1:])])


def digest(ids) -> str:
    """BLAKE2b (hex) of ``ids``' kind and values: tells one set of ids from another."""
    ids = np.asarray(ids)
    if ids.dtype.kind == "O":
        h = hashlib.blake2b(b"utf-8 strings", digest_size=16)
        for part in encode(ids):
            h.update(part.tobytes())
        return h.hexdigest()
    h = hashlib.blake2b(ids.dtype.str.encode(), digest_size=16)
    h.update(np.ascontiguousarray(ids).tobytes())
    return h.hexdigest()
