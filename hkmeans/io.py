"""Embeddings files in, result files out.

Inputs are ``.npy`` files, memory-mapped and read in blocks of rows, never loaded
whole. Every file written goes first to a temporary name in its folder, is flushed to
disk, then renamed: a crash never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

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
def atomic_path(path):
    """Yield a temporary path beside ``path``; once the block has written it without
    error, flush it to disk and rename it to ``path``; otherwise remove it. The file
    gets the mode of a newly created one (``0o666`` less the umask)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes it 0600
    finally:
        os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_npy(path, array) -> None:
    """``np.save`` to exactly ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)


def save_npz(path, **arrays) -> None:
    """``np.savez`` to exactly ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def save_text(path, text: str) -> None:
    """``text`` to ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def save_json(path, obj) -> None:
    """JSON to ``path``, atomically."""
    save_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def open_embeddings(path) -> np.ndarray:
    """Memory-map a 2-D numeric ``.npy`` file read-only; :class:`InputError` if it
    is missing, unreadable or not such an array."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a .npy file.")
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except PermissionError:
        raise InputError(f"{path}: not readable (permission denied).") from None
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npy array ({e}).") from None
    if not isinstance(X, np.ndarray):  # an .npz archive
        X.close()
        raise InputError(f"{path}: an .npz archive; save the embeddings as one array with numpy.save.")
    if X.dtype.kind not in "fiu":
        raise InputError(f"{path}: dtype {X.dtype} is not numeric; expected float or integer embeddings.")
    if X.ndim != 2:
        raise InputError(f"{path}: array of shape {X.shape}; expected 2-D (n_samples, n_features).")
    if 0 in X.shape:
        raise InputError(f"{path}: empty array of shape {X.shape}.")
    return X


def block_rows(X) -> int:
    """Rows per block when reading ``X``."""
    return max(1, BLOCK_BYTES // max(1, X.shape[1] * X.dtype.itemsize))


def _bad_rows(block, dtype):
    """Rows of ``block`` that are not finite once cast to ``dtype``: a quick test of
    the whole block first (exponent bits for float16, min and max otherwise), the exact
    one row by row only for a block that fails it."""
    if block.dtype.kind in "iu":
        return np.zeros(len(block), dtype=bool)  # every integer is finite in float32
    if block.dtype == np.float16 and np.dtype(dtype).itemsize >= 4:
        if not ((block.view(np.uint16) & 0x7C00) == 0x7C00).any():  # no inf/NaN exponent
            return np.zeros(len(block), dtype=bool)
    else:
        limit = np.finfo(dtype).max
        lo, hi = block.min(), block.max()  # NaN propagates
        if -limit <= lo and hi <= limit:
            return np.zeros(len(block), dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        return ~np.isfinite(block.astype(dtype)).all(axis=1)


def scan(X, dtype) -> str:
    """Check in blocks, on all cores, that every row of ``X`` is finite once cast to
    ``dtype``; returns a fingerprint (BLAKE2b over shape, dtype and the SHA-1 of each
    block) or raises :class:`InputError` saying how many rows are not and the first."""
    step = block_rows(X)
    starts = range(0, X.shape[0], step)

    def one(a):
        block = np.ascontiguousarray(X[a : a + step])
        bad = _bad_rows(block, dtype)
        first = a + int(np.argmax(bad)) if bad.any() else -1
        return hashlib.sha1(block.data).digest(), int(bad.sum()), first

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(one, starts))
    digest = hashlib.blake2b(repr((X.shape, X.dtype.str)).encode(), digest_size=16)
    n_bad, first = 0, -1
    for block_digest, bad, block_first in results:
        digest.update(block_digest)
        n_bad += bad
        if first < 0:
            first = block_first
    if n_bad:
        raise InputError(
            f"{n_bad} row(s) hold NaN or infinity (as {np.dtype(dtype).name}); the first is row {first}. "
            "Drop or fix them before clustering."
        )
    return digest.hexdigest()


def file_stat(path) -> dict:
    """Size, modification time and inode of ``path``: unchanged, the file is taken
    to be unchanged (as make and rsync do)."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def convert(X, path, dtype) -> np.ndarray:
    """Write ``X`` cast to ``dtype`` to the ``.npy`` file ``path`` block by block
    (atomically) and return it memory-mapped."""
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=X.shape)
        step = block_rows(X)
        for a in range(0, X.shape[0], step):
            out[a : a + step] = X[a : a + step]
        out.flush()
        del out
    return np.load(path, mmap_mode="r+")
