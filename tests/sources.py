"""Writing one array as each kind of input source hkmeans reads."""

import os

import numpy as np

KINDS = ("npy", "shards", "shards glob", "parquet", "parquet fixed", "parquet files", "zarr")


def split(n, sizes):
    """Row boundaries of consecutive parts of ``sizes`` rows (the last takes the rest)."""
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [int(b) for b in bounds if b < n] + [n]


def write_parquet(path, X, row_group_size, fixed=False, **columns):
    """``X`` as the list column ``emb`` of a Parquet file, beside ``columns``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(X.reshape(-1))
    if fixed:
        emb = pa.FixedSizeListArray.from_arrays(flat, X.shape[1])
    else:
        emb = pa.ListArray.from_arrays(pa.array(np.arange(0, X.size + 1, X.shape[1], dtype=np.int32)), flat)
    pq.write_table(pa.table({"emb": emb, **columns}), path, row_group_size=row_group_size)


def bad_source(tmp_path, case):
    """A source that cannot be used (and the column to ask for, if any)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = np.random.default_rng(0).normal(size=(22, 3)).astype(np.float32)
    if case == "truncated parquet":
        write_parquet(tmp_path / "p.parquet", X, 5)
        data = (tmp_path / "p.parquet").read_bytes()
        (tmp_path / "p.parquet").write_bytes(data[: len(data) // 2])
        return tmp_path / "p.parquet", None
    if case == "mixed lengths":
        rows = [list(r) for r in X]
        rows[13] = rows[13][:2]
        pq.write_table(pa.table({"emb": rows}), tmp_path / "p.parquet", row_group_size=5)
        return tmp_path / "p.parquet", None
    if case == "odd first row":  # the row that differs from the others is blamed
        rows = [list(r) for r in X]
        rows[0] = rows[0][:2]
        pq.write_table(pa.table({"emb": rows}), tmp_path / "p.parquet", row_group_size=5)
        return tmp_path / "p.parquet", None
    if case == "two columns of one name":  # pyarrow writes them
        emb = pa.array([list(r) for r in X])
        pq.write_table(pa.Table.from_arrays([emb, emb], names=["emb", "emb"]), tmp_path / "p.parquet")
        return tmp_path / "p.parquet", "emb"
    if case == "null row":
        pq.write_table(pa.table({"emb": [list(X[0]), None, list(X[2])]}), tmp_path / "p.parquet")
        return tmp_path / "p.parquet", None
    if case in ("missing column", "strings column", "scalar column", "no list column"):
        columns = {
            "missing column": {"emb": [list(X[0])]},
            "strings column": {"emb": [["a", "b"]]},
            "scalar column": {"emb": [1.5]},
            "no list column": {"id": [1], "name": ["a"]},
        }[case]
        pq.write_table(pa.table(columns), tmp_path / "p.parquet")
        return tmp_path / "p.parquet", {"missing column": "vec", "strings column": None, "scalar column": "emb"}.get(
            case
        )
    os.makedirs(tmp_path / "s")
    if case == "widths":
        np.save(tmp_path / "s" / "a.npy", X)
        np.save(tmp_path / "s" / "b.npy", X[:, :2])
    elif case == "dtypes":
        np.save(tmp_path / "s" / "a.npy", X)
        np.save(tmp_path / "s" / "b.npy", X.astype(np.float16))
    elif case == "nan":
        np.save(tmp_path / "s" / "a.npy", X)
        X[3, 1] = np.nan
        np.save(tmp_path / "s" / "b.npy", X)
    elif case == "mixed kinds":
        np.save(tmp_path / "s" / "a.npy", X)
        write_parquet(tmp_path / "s" / "b.parquet", X, 5)
    elif case == "empty directory":
        pass
    elif case == "no match":
        return tmp_path / "s" / "*.npy", None
    return tmp_path / "s", None


BAD_SOURCES = {
    "truncated parquet": "p.parquet: not a readable Parquet file (Parquet magic bytes not found",
    "mixed lengths": "p.parquet: row 13 has 2 values, not 3; embeddings of mixed lengths.",
    "odd first row": "p.parquet: row 0 has 2 values, not 3; embeddings of mixed lengths.",
    "two columns of one name": "p.parquet: 2 columns are named 'emb'; rename them apart.",
    "null row": "p.parquet: row 1 is null",
    "missing column": "p.parquet: no column 'vec'; columns: emb.",
    "strings column": "p.parquet: column 'emb' is list<element: string>, not lists of numbers.",
    "scalar column": "p.parquet: column 'emb' is double, not lists of numbers.",
    "no list column": "p.parquet: no list-typed column (columns: id, name); name the embeddings column",
    "widths": "b.npy: 2 columns of float32, but",
    "dtypes": "b.npy: 3 columns of float16, but",
    "nan": "1 row(s) hold NaN or infinity (as float32); the first is row 25.",
    "mixed kinds": "s: holds both .npy and Parquet files",
    "empty directory": "s: empty directory: no .npy or Parquet",
    "no match": "*.npy: no file matches",
}


def write_source(kind, X, folder, sizes=(4, 7, 11)):
    """Write ``X`` under ``folder`` as a source of ``kind`` in parts of ``sizes`` rows
    (shards, row groups, zarr chunks: the first size); returns the path to open and
    the chunk boundaries expected."""
    folder = os.fspath(folder)
    n = len(X)
    bounds = split(n, sizes)
    if kind == "npy":
        np.save(os.path.join(folder, "x.npy"), X)
        return os.path.join(folder, "x.npy"), [0, n]
    if kind in ("shards", "shards glob"):
        shards = os.path.join(folder, "shards")
        os.makedirs(shards)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            np.save(os.path.join(shards, f"part_{i * 5}.npy"), X[a:b])  # part_10 after part_5
        return (shards if kind == "shards" else os.path.join(shards, "*.npy")), bounds
    if kind in ("parquet", "parquet fixed"):
        path = os.path.join(folder, "x.parquet")
        write_parquet(path, X, sizes[0], fixed=kind == "parquet fixed")
        return path, split(n, [sizes[0]] * n)
    if kind == "parquet files":
        pool = os.path.join(folder, "pool")
        os.makedirs(pool)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            write_parquet(os.path.join(pool, f"part-{i * 5}.parquet"), X[a:b], n)
        return pool, bounds
    if kind == "zarr":
        import zarr

        path = os.path.join(folder, "x.zarr")
        z = zarr.open_array(path, mode="w", shape=X.shape, chunks=(sizes[0], X.shape[1]), dtype=X.dtype)
        z[:] = X
        return path, split(n, [sizes[0]] * n)
    raise ValueError(kind)
