"""Passes over an input pool (check, fingerprint, copy) and result files out.

Inputs are pools of embeddings (:mod:`hkmeans.readers`), read chunk by chunk, never
loaded whole. Every file written goes first to a temporary name in its folder, is
flushed to disk, then renamed: a crash never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._validation import range_error

BLOCK_BYTES = 32 << 20  # bytes of input read at a time


class InputError(ValueError):
    """An input file that cannot be used; the message says which and why."""


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def umask() -> int:
    """The process's file mode creation mask."""
    try:
        with open("/proc/self/status") as f:  # read without changing it
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, fsync=True):
    """Yield a temporary path beside ``path``; once the block has written it without
    error, flush it to disk (unless not ``fsync``: a file a rerun recomputes) and
    rename it to ``path``; otherwise remove it. The file gets the mode of a newly
    created one (``0o666`` less the umask)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes it 0600
    finally:
        os.close(fd)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(directory)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename in (None, tmp) and e.errno is not None:
            raise OSError(e.errno, e.strerror, path) from e  # name the file being written, not the temporary
        raise


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a temporary folder beside ``path`` (which must be missing or an empty
    folder; its parents are made); once the block has filled it without error, rename
    it to ``path``, else remove it: ``path`` holds all the files or none."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it 0700
        yield tmp
        os.replace(tmp, path)  # onto an empty folder too
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_npy(path, array, fsync=True) -> None:
    """``np.save`` to exactly ``path``, atomically (see :func:`atomic_path`)."""
    with atomic_path(path, fsync) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def save_npz(path, **arrays) -> None:
    """``np.savez`` to exactly ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def save_text(path, text: str) -> None:
    """``text`` to ``path`` in UTF-8 (what the report's page declares, whatever the
    locale), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def save_json(path, obj) -> None:
    """JSON to ``path``, atomically."""
    save_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def block_rows(X) -> int:
    """Rows per block of :data:`BLOCK_BYTES` when reading ``X`` (an array or a pool)."""
    return max(1, BLOCK_BYTES // max(1, X.shape[1] * X.dtype.itemsize))


def _bad_rows(block, dtype, lo, hi):
    """Rows of ``block`` (of smallest and largest value ``lo`` and ``hi``, NaN if it
    holds one) that are not finite once cast to ``dtype``: a quick test of the whole
    block first, the exact one row by row only for a block that fails it."""
    if block.dtype.kind in "iu":
        return np.zeros(len(block), dtype=bool)  # every integer is finite in float32
    limit = np.finfo(dtype).max
    if -limit <= lo and hi <= limit:
        return np.zeros(len(block), dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        return ~np.isfinite(block.astype(dtype)).all(axis=1)


def scan(pool, dtype, nonzero=False, metric=None) -> str:
    """Check chunk by chunk, on all cores, that every row of ``pool`` (a
    :class:`~hkmeans.readers.Pool`) is finite once cast to ``dtype`` (and, with
    ``nonzero``, not all zeros: a cosine has no meaning for it), and with ``metric``
    that its values suit it in ``dtype`` (:func:`~hkmeans._validation.range_error`); returns a
    fingerprint (BLAKE2b over shape, dtype, the pool's salt and the SHA-1 of each
    chunk) or raises :class:`InputError` saying how many rows are not and the first."""

    def one(bounds):
        a, b = bounds
        block = pool.read(a, b)
        lo, hi = (block.min(), block.max()) if block.size else (0, 0)  # NaN propagates
        found = []
        for bad in (_bad_rows(block, dtype, lo, hi), _zero_rows(block, dtype) if nonzero else None):
            if bad is not None:
                found.append((int(bad.sum()), a + int(np.argmax(bad)) if bad.any() else -1))
        largest = max(-float(lo), float(hi))
        return hashlib.sha1(block.data).digest(), found, largest

    chunks = pool.chunks.tolist()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as threads:
        results = list(threads.map(one, zip(chunks[:-1], chunks[1:])))
    digest = hashlib.blake2b(repr((tuple(pool.shape), pool.dtype.str)).encode(), digest_size=16)
    digest.update(pool.salt)
    for block_digest, _, _ in results:
        digest.update(block_digest)
    problems = (
        "hold NaN or infinity (as {dtype}); the first is row {first}. Drop or fix them before clustering.",
        "are zero (as {dtype}); the first is row {first}. A cosine similarity needs rows of non-zero "
        "norm: drop them, or compare by Euclidean distance.",
    )
    for i, problem in enumerate(problems[: 2 if nonzero else 1]):
        n_bad = sum(found[i][0] for _, found, _ in results)
        if n_bad:
            first = next(found[i][1] for _, found, _ in results if found[i][1] >= 0)
            raise InputError(f"{n_bad} row(s) " + problem.format(dtype=np.dtype(dtype).name, first=first))
    why = (
        None if metric is None else range_error(max((r[2] for r in results), default=0.0), dtype, pool.shape[1], metric)
    )
    if why is not None:
        raise InputError(why)
    return digest.hexdigest()


def _zero_rows(block, dtype):
    """Rows of ``block`` that are all zeros once cast to ``dtype``."""
    with np.errstate(over="ignore", invalid="ignore"):
        return ~block.astype(dtype, copy=False).any(axis=1)


def file_stat(path) -> dict:
    """Size, modification time and inode of ``path``: unchanged, the file is taken
    to be unchanged (as make and rsync do)."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def file_digest(path) -> str | None:
    """BLAKE2b of the bytes of the file at ``path``, or None where it cannot be read."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def file_id(path) -> tuple | None:
    """``(device, inode)`` of the file ``path`` names (through links), or None where
    there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def same_file(a, b) -> bool:
    """Whether the paths ``a`` and ``b`` both exist and name the same file."""
    key = file_id(a)
    return key is not None and key == file_id(b)


def convert(pool, path, dtype) -> np.ndarray:
    """Write ``pool`` cast to ``dtype`` to the ``.npy`` file ``path`` chunk by chunk
    (atomically) and return it memory-mapped."""
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(pool.shape))
        for a, block in pool.iter_chunks():
            out[a : a + len(block)] = block
        out.flush()
        del out
    return np.load(path, mmap_mode="r+")


def save_parquet(path, blocks) -> None:
    """NumPy structured arrays (``blocks``, an iterable of arrays of one dtype) to the
    Parquet file ``path``, one row group each, atomically; needs pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        writer = None
        try:
            for block in blocks:
                # object columns hold string ids: typed so even when empty
                table = pa.table(
                    {
                        name: pa.array(block[name], type=pa.string() if block.dtype[name].hasobject else None)
                        for name in block.dtype.names
                    }
                )
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise ValueError("no table to write")
