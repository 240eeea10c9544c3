"""Reading embeddings in blocks and writing files atomically."""

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hkmeans import io
from hkmeans.readers import open_pool


def naive_bad_rows(X, dtype):
    with np.errstate(over="ignore", invalid="ignore"):
        return np.flatnonzero(~np.isfinite(np.asarray(X).astype(dtype)).all(axis=1))


@given(
    n=st.integers(1, 60),
    d=st.integers(1, 5),
    stored=st.sampled_from(["float16", "float32", "float64", ">f4", "int16", "int64"]),
    dtype=st.sampled_from(["float32", "float64"]),
    bad=st.lists(
        st.tuples(st.integers(0, 59), st.integers(0, 4), st.sampled_from([np.nan, np.inf, -np.inf, 1e39, -1e300, 6e4])),
        max_size=6,
    ),
    fortran=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_scan_counts_bad_rows_like_numpy(n, d, stored, dtype, bad, fortran, seed):
    X = np.random.default_rng(seed).normal(size=(n, d)) * 100
    if np.dtype(stored).kind == "f":
        for i, j, v in bad:
            X[i % n, j % d] = v
    with np.errstate(over="ignore", invalid="ignore"):
        X = X.astype(stored)
    if fortran:
        X = np.asfortranarray(X)
    expected = naive_bad_rows(X, dtype)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(io, "BLOCK_BYTES", 7 * d * np.dtype(stored).itemsize)  # 7-row blocks
        if expected.size:
            with pytest.raises(io.InputError, match=rf"^{expected.size} row\(s\) .* the first is row {expected[0]}\."):
                io.scan(open_pool(X), dtype)
        else:
            assert len(io.scan(open_pool(X), dtype)) == 32


def test_fingerprint_follows_the_bytes():
    X = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    first = io.scan(open_pool(X), np.float32)
    assert io.scan(open_pool(X.copy()), np.float32) == first
    Y = X.copy()
    Y[57, 1] = np.nextafter(Y[57, 1], np.inf, dtype=np.float32)
    assert io.scan(open_pool(Y), np.float32) != first
    assert io.scan(open_pool(X.reshape(50, 6)), np.float32) != first  # shape counts


def test_scan_finds_zero_rows_only_when_asked_and_keeps_the_fingerprint(monkeypatch):
    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float64)
    X[[17, 41, 44]] = 0.0
    X[30] = 1e-300  # zero once cast to float32, not in float64
    monkeypatch.setattr(io, "BLOCK_BYTES", 7 * 3 * 8)  # 7-row blocks: rows 17 and 41 in others than 30
    plain = io.scan(open_pool(X), np.float32)
    with pytest.raises(io.InputError, match=r"^4 row\(s\) are zero \(as float32\); the first is row 17\. "):
        io.scan(open_pool(X), np.float32, nonzero=True)
    with pytest.raises(io.InputError, match=r"^3 row\(s\) are zero \(as float64\); the first is row 17\. "):
        io.scan(open_pool(X), np.float64, nonzero=True)
    Y = np.delete(X, [17, 30, 41, 44], axis=0)
    assert io.scan(open_pool(Y), np.float32, nonzero=True) == io.scan(open_pool(Y), np.float32) != plain
    X[3, 1] = np.nan  # a NaN row is named first
    with pytest.raises(io.InputError, match=r"^1 row\(s\) hold NaN"):
        io.scan(open_pool(X), np.float32, nonzero=True)


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "a.npy"
    io.save_npy(target, np.arange(3))
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError
    assert os.listdir(tmp_path) == ["a.npy"]
    np.testing.assert_array_equal(np.load(target), np.arange(3))


def test_convert_writes_a_c_ordered_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "BLOCK_BYTES", 64)
    X = np.asfortranarray(np.arange(60, dtype=np.float16).reshape(20, 3))
    out = io.convert(open_pool(X), tmp_path / "c.npy", np.float32)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, X.astype(np.float32))
