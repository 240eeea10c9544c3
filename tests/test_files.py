"""Files read and written (``readers.py``, ``io.py``, ``ids.py``): what a pool of
files accepts and refuses, what the fingerprints and digests follow, how a file
reaches its path, and text ids in bytes."""

import os

import numpy as np
import pytest

from hkmeans import io
from hkmeans.ids import decode, digest, encode
from hkmeans.io import InputError
from hkmeans.readers import open_pool

from .sources import write_parquet


def embeddings(n=22, d=3, dtype=np.float32, seed=0):
    return (np.random.default_rng(seed).normal(size=(n, d)) * 10).astype(dtype)


def test_boolean_embeddings_are_refused(tmp_path):
    np.save(tmp_path / "b.npy", np.ones((4, 3), dtype=bool))
    with pytest.raises(InputError, match=r"dtype bool is not numeric"):
        open_pool(tmp_path / "b.npy")
    with pytest.raises(InputError, match=r"dtype bool is not numeric"):
        open_pool(np.ones((4, 3), dtype=bool))


def test_parquet_files_of_other_value_types_are_refused(tmp_path):
    pytest.importorskip("pyarrow")
    X = embeddings()
    write_parquet(tmp_path / "a_1.parquet", X[:10], 5)
    write_parquet(tmp_path / "a_2.parquet", X[10:].astype(np.float64), 5)
    with pytest.raises(InputError, match=r"a_2.parquet: column 'emb' is list<.*double.*> here but list<.*float.*> in"):
        open_pool(tmp_path)


def test_null_values_inside_an_embedding_are_refused(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [[1.0, 2.0], [3.0, None], [5.0, 6.0]]
    pq.write_table(pa.table({"emb": pa.array(rows, pa.list_(pa.float32()))}), tmp_path / "p.parquet")
    with pytest.raises(InputError, match=r"p.parquet: null values inside the embeddings of rows 0 to 2\."):
        io.scan(open_pool(tmp_path / "p.parquet"), np.float32)  # when opened, or at the latest when read


def test_a_bad_row_is_named_by_its_row_in_the_whole_input_on_a_partial_read(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [list(r) for r in embeddings()]
    rows[13] = rows[13][:2]
    pq.write_table(pa.table({"emb": rows}), tmp_path / "p.parquet", row_group_size=5)
    pool = open_pool(tmp_path / "p.parquet")
    with pytest.raises(InputError, match=r"p.parquet: row 13 has 2 values, not 3"):
        pool.read(12, 15)


def test_zarr_chunks_follow_its_shards(tmp_path):
    zarr = pytest.importorskip("zarr")
    if not hasattr(zarr, "create_array"):
        pytest.skip("zarr 2 has no shards")
    X = embeddings(n=20)
    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=X.shape, chunks=(2, 3), shards=(10, 3), dtype=X.dtype)
    z[:] = X
    pool = open_pool(tmp_path / "x.zarr")
    assert pool.chunks.tolist() == [0, 10, 20]
    np.testing.assert_array_equal(np.concatenate([r for _, r in pool.iter_chunks()]), X)


def test_a_damaged_zarr_chunk_is_one_line(tmp_path):
    """Its codec's own error (a RuntimeError from numcodecs) came out as a traceback."""
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(str(tmp_path / "c.zarr"), mode="w", shape=(4, 3), chunks=(2, 3), dtype="f4")
    z[:] = 1
    for root, _, names in os.walk(tmp_path / "c.zarr"):
        for name in names:
            if name not in ("zarr.json", ".zarray", ".zattrs", ".zgroup"):
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"garbage")
    with pytest.raises(InputError, match=r"c.zarr: rows 0 to 2 cannot be read \("):
        io.scan(open_pool(tmp_path / "c.zarr"), np.float32)


def test_the_fingerprint_follows_every_row_of_every_chunk(monkeypatch):
    monkeypatch.setattr(io, "BLOCK_BYTES", 7 * 3 * 4)  # 7-row blocks
    X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    first = io.scan(open_pool(X), np.float32)
    for row in (0, 6, 7, 13, 19):  # first and last rows of blocks
        Y = X.copy()
        Y[row, 2] += 1
        assert io.scan(open_pool(Y), np.float32) != first, row


def test_the_fingerprint_follows_the_dtype():
    X = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    assert io.scan(open_pool(X.view(np.int32)), np.float32) != io.scan(open_pool(X), np.float32)


def test_files_written_get_the_mode_of_a_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        io.save_npy(tmp_path / "a.npy", np.arange(3))
        io.save_json(tmp_path / "a.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.npy").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


def test_atomic_folder_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with io.atomic_folder(tmp_path / "out") as tmp:
            open(os.path.join(tmp, "half.parquet"), "wb").close()
            raise RuntimeError
    assert os.listdir(tmp_path) == []


def test_save_npy_leaves_the_old_file_whole_on_error(tmp_path, monkeypatch):
    target = tmp_path / "a.npy"
    io.save_npy(target, np.arange(3))

    def half(f, array, allow_pickle):
        f.write(b"\x93NUMPY half")
        raise RuntimeError

    monkeypatch.setattr(np, "save", half)
    with pytest.raises(RuntimeError):
        io.save_npy(target, np.arange(5))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["a.npy"]
    np.testing.assert_array_equal(np.load(target), np.arange(3))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="tells a folder's descriptor from a file's by /proc")
def test_a_file_is_flushed_to_disk_before_it_is_renamed(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}")))  # a folder's fd, or a file's
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", None))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    io.save_npy(tmp_path / "a.npy", np.arange(3))
    assert events == [("fsync", False), ("replace", None), ("fsync", True)]  # the file, then its folder
    events.clear()
    io.save_npy(tmp_path / "b.npy", np.arange(3), fsync=False)
    assert events == [("replace", None)]


def test_file_digest_follows_bytes_past_the_first_mebibyte(tmp_path):
    data = bytearray(3 << 20)
    (tmp_path / "a").write_bytes(data)
    data[(2 << 20) + 5] = 1
    (tmp_path / "b").write_bytes(data)
    assert io.file_digest(tmp_path / "a") != io.file_digest(tmp_path / "b")
    assert io.file_digest(tmp_path / "a") == io.file_digest(tmp_path / "a")
    assert io.file_digest(tmp_path / "missing") is None


def test_two_missing_paths_are_not_the_same_file(tmp_path):
    assert not io.same_file(tmp_path / "a", tmp_path / "b")
    (tmp_path / "a").write_bytes(b"")
    assert io.same_file(tmp_path / "a", tmp_path / "a")


def test_a_folder_matching_the_glob_is_left_out(tmp_path):
    X = embeddings(n=8)
    np.save(tmp_path / "a_1.npy", X[:5])
    np.save(tmp_path / "a_2.npy", X[5:])
    (tmp_path / "a_3.npy").mkdir()
    pool = open_pool(tmp_path / "a_*.npy")
    assert [os.path.basename(f) for f in pool.files] == ["a_1.npy", "a_2.npy"]
    np.testing.assert_array_equal(pool.read(0, 8), X)


def test_a_non_decimal_digit_between_decimal_ones_sorts_as_text(tmp_path):
    X = embeddings(n=8)
    np.save(tmp_path / "s_1\u00b22.npy", X[:4])  # a superscript two between digits
    np.save(tmp_path / "s_10.npy", X[4:])
    pool = open_pool(tmp_path)
    assert [os.path.basename(f) for f in pool.files] == ["s_1\u00b22.npy", "s_10.npy"]
    np.testing.assert_array_equal(pool.read(0, 8), X)


def test_non_ascii_ids_round_trip_with_byte_offsets():
    ids = np.array(["é", "日本", "a\x00b", "", "\U0001f600"], dtype=object)
    offsets, data = encode(ids)
    assert offsets.tolist() == [0, 2, 8, 11, 11, 15] and len(data) == 15
    assert decode(offsets, data).tolist() == ids.tolist()


@pytest.mark.parametrize(
    "offsets, data",
    [
        ([1, 3], b"abc"),  # does not start at 0
        ([0, 2, 1, 3], b"abc"),  # goes back
        ([0, 2], b"abc"),  # leaves bytes over
        ([0, 4], b"abc"),  # runs past the data
    ],
)
def test_decode_refuses_offsets_that_do_not_fit(offsets, data):
    with pytest.raises(ValueError, match="offsets do not fit the data"):
        decode(np.array(offsets, np.int64), np.frombuffer(data, np.uint8))


def test_the_ids_digest_tells_ids_apart_that_join_alike():
    a, b = np.array(["ab", "c"], dtype=object), np.array(["a", "bc"], dtype=object)
    assert digest(a) != digest(b)
    assert digest(a) == digest(np.array(["ab", "c"], dtype=object))
    assert digest(np.array([1, 2], np.int64)) != digest(np.array(["1", "2"], dtype=object))
