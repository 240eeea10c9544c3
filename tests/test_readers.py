"""Input pools: each source read back chunk by chunk, and every bad one refused."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hkmeans import io, readers
from hkmeans.io import InputError
from hkmeans.readers import open_pool

from .sources import BAD_SOURCES, KINDS, bad_source, split, write_parquet, write_source

pytest.importorskip("pyarrow")
pytest.importorskip("zarr")


def embeddings(n=22, d=3, dtype=np.float32, seed=0):
    return (np.random.default_rng(seed).normal(size=(n, d)) * 10).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_each_source_reads_back_the_array_in_its_natural_chunks(tmp_path, kind, dtype):
    X = embeddings(dtype=dtype)
    source, bounds = write_source(kind, X, tmp_path)
    pool = open_pool(source)
    assert pool.shape == X.shape and pool.dtype == dtype
    assert pool.chunks.tolist() == bounds
    whole = pool.read(0, len(X))
    assert whole.flags.c_contiguous and whole.dtype == dtype
    np.testing.assert_array_equal(whole, X)
    parts = list(pool.iter_chunks())
    assert [a for a, _ in parts] == bounds[:-1]
    np.testing.assert_array_equal(np.concatenate([rows for _, rows in parts]), X)
    np.testing.assert_array_equal(pool.read(3, 17), X[3:17])
    assert pool.read(5, 5).shape == (0, 3)
    record = pool.describe()
    assert os.path.isabs(record["path"]) and ("stat" in record or "files" in record)


def test_a_fingerprint_follows_the_rows_and_chunks_not_the_format(tmp_path):
    X = embeddings(dtype=np.float16)
    shards, parquet = (open_pool(write_source(kind, X, tmp_path)[0]) for kind in ("shards", "parquet files"))
    assert io.scan(shards, np.float32) == io.scan(parquet, np.float32)
    np.save(tmp_path / "x.npy", X)
    assert io.scan(open_pool(tmp_path / "x.npy"), np.float32) == io.scan(open_pool(X), np.float32)


@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=6),
    kind=st.sampled_from(["shards", "parquet", "zarr"]),
    ranges=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=5),
    keep=st.lists(st.booleans(), min_size=60, max_size=60),
    block=st.integers(1, 5),
)
def test_any_rows_read_equal_the_slice(sizes, kind, ranges, keep, block):
    X = embeddings(n=sum(sizes), d=2, dtype=np.float16, seed=len(sizes))
    n = len(X)
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as mp:
        mp.setattr(io, "BLOCK_BYTES", block * 2 * 2)  # shards cut in blocks of `block` rows
        pool = open_pool(write_source(kind, X, folder, sizes)[0])
        if kind == "shards":
            expected = sorted(
                {b for a, c in zip(split(n, sizes)[:-1], split(n, sizes)[1:]) for b in range(a, c, block)} | {n}
            )
            assert pool.chunks.tolist() == expected
        for a, b in ranges:
            a, b = sorted((a % (n + 1), b % (n + 1)))
            np.testing.assert_array_equal(pool.read(a, b), X[a:b])
        rows = np.flatnonzero(keep[:n])
        if rows.size:
            subset = readers.SubsetPool(pool, rows)
            assert subset.shape == (rows.size, 2)
            # its chunks are the base's: each within one base chunk, cut where the base is
            base_chunk = np.searchsorted(pool.chunks, rows, side="right") - 1
            c = subset.chunks
            assert c[0] == 0 and c[-1] == rows.size and (np.diff(c) > 0).all()
            assert all((base_chunk[a:b] == base_chunk[a]).all() for a, b in zip(c[:-1], c[1:]))
            assert (base_chunk[c[1:-1]] != base_chunk[c[1:-1] - 1]).all()
            np.testing.assert_array_equal(np.concatenate([r for _, r in subset.iter_chunks()]), X[rows])
            for a, b in ranges:
                a, b = sorted((a % (rows.size + 1), b % (rows.size + 1)))
                np.testing.assert_array_equal(subset.read(a, b), X[rows[a:b]])


def test_shards_are_in_natural_order_and_hidden_files_are_left_out(tmp_path):
    X = embeddings(n=12)
    for i, name in enumerate(["s_1.npy", "s_2.npy", "s_10.npy"]):
        np.save(tmp_path / name, X[4 * i : 4 * i + 4])
    np.save(tmp_path / ".s_0.npy", X[:1])
    (tmp_path / "notes.txt").write_text("not an input")
    pool = open_pool(tmp_path)
    assert [os.path.basename(f) for f in pool.files] == ["s_1.npy", "s_2.npy", "s_10.npy"]
    np.testing.assert_array_equal(pool.read(0, 12), X)
    np.save(tmp_path / "\u00b2s.npy", X[:4])  # a digit that is not a decimal one sorts as text
    assert os.path.basename(open_pool(tmp_path).files[-1]) == "\u00b2s.npy"


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_a_shard_of_no_rows_adds_none_and_a_pool_of_none_is_refused(tmp_path, suffix):
    """A job that wrote no rows leaves an empty shard: .npy shards and Parquet files
    alike read past it; a pool whose shards are all empty has nothing to read."""
    X = embeddings(n=9)

    def save(path, rows):
        np.save(path, rows) if suffix == ".npy" else write_parquet(path, rows, 4)

    for i, (a, b) in enumerate([(0, 4), (4, 4), (4, 9), (9, 9)]):
        save(tmp_path / f"part_{i}{suffix}", X[a:b])
    pool = open_pool(tmp_path)
    assert pool.shape == X.shape and pool.chunks.tolist()[-1] == 9
    np.testing.assert_array_equal(pool.read(0, 9), X)
    np.testing.assert_array_equal(pool.read(3, 6), X[3:6])
    np.testing.assert_array_equal(np.concatenate([rows for _, rows in pool.iter_chunks()]), X)
    empty = tmp_path / "empty"
    empty.mkdir()
    save(empty / f"a{suffix}", X[:0])
    with pytest.raises(InputError, match=r"empty: no rows\.$"):
        open_pool(empty)
    if suffix == ".npy":  # a single file of no rows, or a shard without columns, stays refused
        with pytest.raises(InputError, match=r"empty array of shape \(0, 3\)"):
            open_pool(empty / "a.npy")
        np.save(tmp_path / "part_9.npy", np.zeros((2, 0), np.float32))
        with pytest.raises(InputError, match=r"part_9.npy: empty array of shape \(2, 0\)"):
            open_pool(tmp_path)


def test_parquet_column_is_the_only_list_column_or_named(tmp_path):
    X = embeddings()
    write_parquet(tmp_path / "a.parquet", X, 5, id=np.arange(len(X)))
    assert open_pool(tmp_path / "a.parquet").describe()["column"] == "emb"
    write_parquet(tmp_path / "b.parquet", X, 5, other=[[1.0]] * len(X))
    with pytest.raises(InputError, match=r"list-typed columns emb, other; name the embeddings column"):
        open_pool(tmp_path / "b.parquet")
    np.testing.assert_array_equal(open_pool(tmp_path / "b.parquet", column="emb").read(0, len(X)), X)
    assert open_pool(tmp_path / "b.parquet", column="other").shape == (len(X), 1)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(InputError, match="a column is chosen only in Parquet input"):
        open_pool(tmp_path / "x.npy", column="emb")


def test_subset_is_part_of_the_fingerprint(tmp_path):
    X = embeddings()
    X[1] = X[0]
    np.save(tmp_path / "x.npy", X)
    first, second = (io.scan(open_pool(tmp_path / "x.npy", subset_indices=[i]), np.float32) for i in (0, 1))
    assert first != second  # the same bytes, other rows


@pytest.mark.parametrize("case", BAD_SOURCES)
def test_bad_sources_raise_one_line_input_errors(tmp_path, case):
    source, column = bad_source(tmp_path, case)
    with pytest.raises(InputError) as e:
        io.scan(open_pool(source, column=column), np.float32)  # some show only in the rows
    assert BAD_SOURCES[case] in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "indices, message",
    [
        ([3, 5, 22], "subset index 22 out of range for a pool of 22 rows"),
        ([-1, 5], "subset index -1 is negative"),
        ([3, 5, 4], "row 4 at position 2 after 5: not sorted"),
        ([3, 5, 5], "row 5 at position 2 listed twice"),
        (np.zeros(0, np.int64), "no subset indices"),
        ([[1, 2]], "must be a 1-D array of integers, got shape (1, 2)"),
        ([1.0, 2.0], "must be a 1-D array of integers, got shape (2,) of float64"),
        (np.array([3, 2**63], np.uint64), "subset index 9223372036854775808 out of range"),
    ],
)
def test_bad_subset_indices(tmp_path, indices, message):
    np.save(tmp_path / "x.npy", embeddings())
    np.save(tmp_path / "idx.npy", np.array(indices))
    with pytest.raises(InputError) as e:
        open_pool(tmp_path / "x.npy", subset_indices=tmp_path / "idx.npy")
    assert message in str(e.value) and str(e.value).startswith(str(tmp_path / "idx.npy"))


def test_a_missing_package_names_the_extra(tmp_path, monkeypatch):
    write_parquet(tmp_path / "p.parquet", embeddings(), 5)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import fails
    with pytest.raises(InputError, match=r"p.parquet: reading it needs pyarrow: pip install 'hkmeans\[parquet\]'"):
        open_pool(tmp_path / "p.parquet")


def test_import_hkmeans_loads_neither_pyarrow_nor_zarr():
    code = "import sys, hkmeans.readers, hkmeans.cli.main; print(sorted({'pyarrow', 'zarr'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_two_columns_of_one_name_in_a_later_parquet_file_are_one_line(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = pa.array([[1.0, 2.0]] * 4)
    (tmp_path / "p").mkdir()
    pq.write_table(pa.table({"emb": rows}), tmp_path / "p" / "a.parquet")
    pq.write_table(pa.Table.from_arrays([rows, rows], names=["emb", "emb"]), tmp_path / "p" / "b.parquet")
    with pytest.raises(InputError, match=r"b.parquet: 2 columns are named 'emb'; rename them apart"):
        open_pool(str(tmp_path / "p"))
