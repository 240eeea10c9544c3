"""Ids in, tables out: ``--ids``/``--id-column``, ``selected.parquet``, ``hkmeans export``,
several target sizes, and :mod:`hkmeans.tables` over a tree."""

import importlib.util
import json
import os

import numpy as np
import pytest

from hkmeans import ClusterTree, HierarchicalKMeans
from hkmeans.cli.rundir import RunDir
from hkmeans.ids import check_ids, load_ids
from hkmeans.io import InputError
from hkmeans.tables import assignments, cluster_table, selected_table

from .sources import write_parquet
from .test_cli import API, FIT, assert_error, blobs, hkmeans

pq = pytest.importorskip("pyarrow.parquet")

N = 3000


def string_ids(n=N):
    return np.array([f"img/{i * 7 % n:05d}.jpg" for i in range(n)])


def int_ids(n=N):
    return 10**12 + 3 * np.random.default_rng(1).permutation(n).astype(np.int64)


def read(path):
    return pq.read_table(path).to_pydict()


def check_selected(run, selected, indices, ids, rows=None):
    """``selected`` (a Parquet file) holds each row of ``indices`` once, ``times`` its
    repeats, its id and its clusters and distance as in the run's tree."""
    table, idx = read(selected), np.load(indices)
    row, times = np.array(table["row"]), np.array(table["times"])
    np.testing.assert_array_equal(np.repeat(row, times), idx)
    assert (np.diff(row) > 0).all() and (times >= 1).all()
    if ids is None:
        assert "id" not in table
    else:
        np.testing.assert_array_equal(np.array(table["id"]), ids[row])
    tree = ClusterTree.load(run / "tree.npz")
    at = row if rows is None else np.searchsorted(rows, row)
    for t in range(tree.n_levels):
        np.testing.assert_array_equal(table[f"cluster_level{t}"], tree.point_labels(t)[at])
    np.testing.assert_allclose(table["distance"], tree.distances[at])


@pytest.fixture
def pool(tmp_path):
    X = blobs()
    np.save(tmp_path / "x.npy", X)
    return tmp_path, tmp_path / "x.npy"


@pytest.mark.parametrize("kind", ["int npy", "string npy", "int txt", "string csv"])
def test_ids_file_round_trip(pool, kind):
    tmp, x = pool
    ids = int_ids() if kind.startswith("int") else string_ids()
    path = tmp / ("ids." + kind.split()[1])
    if path.suffix == ".npy":
        np.save(path, ids)
    else:
        path.write_text("".join(f"{v}\n" for v in ids))
    hkmeans("curate", x, "--out", tmp / "run", *FIT, "--ids", path, "--target-size", 700, "--multiplier", 2, "-q")
    kept = RunDir.ids(tmp / "run")
    np.testing.assert_array_equal(kept, ids)
    assert kept.dtype.kind == ("i" if kind.startswith("int") else "O")
    assert (tmp / "run" / ("ids.npy" if kind.startswith("int") else "ids.npz")).is_file()
    record = json.loads((tmp / "run" / "manifest.json").read_text())["ids"]
    assert record["n"] == N and record["from"] == str(path)
    words = "integers" if kind.startswith("int") else "strings"
    assert f"ids            {N} {words} from {path}" in hkmeans("info", tmp / "run").stdout
    check_selected(tmp / "run", tmp / "run" / "selected.parquet", tmp / "run" / "indices.npy", ids)
    assert max(read(tmp / "run" / "selected.parquet")["times"]) == 2  # 700 of 3000 balanced: some twice

    os.unlink(path)  # sample needs only the run directory
    hkmeans("sample", tmp / "run", "--target-size", 300, "-o", tmp / "s.npy", "-q")
    check_selected(tmp / "run", tmp / "s.parquet", tmp / "s.npy", ids)


@pytest.mark.parametrize("column", [None, "key"])
def test_parquet_id_column(tmp_path, column):
    X = blobs()
    ids = string_ids() if column else int_ids()
    write_parquet(tmp_path / "p.parquet", X, 700, **{column or "id": ids})
    flags = ["--id-column", column] if column else []
    hkmeans("curate", tmp_path / "p.parquet", "--out", tmp_path / "run", *FIT, *flags, "--target-size", 400, "-q")
    np.testing.assert_array_equal(RunDir.ids(tmp_path / "run"), ids)
    check_selected(tmp_path / "run", tmp_path / "run" / "selected.parquet", tmp_path / "run" / "indices.npy", ids)


@pytest.mark.parametrize("empty_at", [0, 1, 2])
@pytest.mark.parametrize("column", [None, "id"])
def test_a_parquet_file_of_no_rows_decides_nothing_about_the_ids(tmp_path, empty_at, column):
    # a job that wrote no rows writes a file without the id column: wherever it sorts,
    # the ids of the files that hold rows are read (first, it turned the ids off, and
    # --id-column id was refused)
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from hkmeans.ids import column_ids
    from hkmeans.readers import open_pool

    X = blobs()[:300]
    ids = [f"a{i}" for i in range(300)]
    parts = [(0, 150), (150, 300)]
    parts.insert(empty_at, None)
    (tmp_path / "pq").mkdir()
    for i, part in enumerate(parts):
        if part is None:
            table = pa.table({"emb": pa.array([], pa.list_(pa.float32()))})
        else:
            a, b = part
            table = pa.table({"emb": pa.array(list(X[a:b]), pa.list_(pa.float32())), "id": ids[a:b]})
        pq.write_table(table, tmp_path / "pq" / f"part-{i}.parquet")
    got = column_ids(open_pool(str(tmp_path / "pq")), column)
    assert list(got) == ids


def test_no_ids(pool):
    tmp, x = pool
    hkmeans("curate", x, "--out", tmp / "run", *FIT, "--target-size", 400, "-q")
    assert not (tmp / "run" / "ids.npy").exists() and not (tmp / "run" / "ids.npz").exists()
    check_selected(tmp / "run", tmp / "run" / "selected.parquet", tmp / "run" / "indices.npy", None)
    hkmeans("export", tmp / "run")
    assert "id" not in read(tmp / "run" / "assignments.parquet")


def test_subset_ids_are_of_the_whole_input(pool):
    tmp, x = pool
    rows = np.arange(0, N, 3)
    np.save(tmp / "rows.npy", rows)
    ids = string_ids()
    np.save(tmp / "ids.npy", ids)
    hkmeans(
        "curate",
        x,
        "--out",
        tmp / "run",
        *FIT,
        "--subset-indices",
        tmp / "rows.npy",
        "--ids",
        tmp / "ids.npy",
        "--target-size",
        200,
        "-q",
    )
    check_selected(tmp / "run", tmp / "run" / "selected.parquet", tmp / "run" / "indices.npy", ids, rows)
    hkmeans("export", tmp / "run", "--out", tmp / "tables")
    table = read(tmp / "tables" / "assignments.parquet")
    np.testing.assert_array_equal(table["row"], rows)
    np.testing.assert_array_equal(table["id"], ids[rows])


def test_export_agrees_with_the_tree(pool):
    tmp, x = pool
    ids = int_ids()
    np.save(tmp / "ids.npy", ids)
    hkmeans("curate", x, "--out", tmp / "run", *FIT, "--ids", tmp / "ids.npy", "--target-size", 500, "-q")
    hkmeans("export", tmp / "run", "--out", tmp / "new" / "tables")
    tree = ClusterTree.load(tmp / "run" / "tree.npz")
    rows = read(tmp / "new" / "tables" / "assignments.parquet")
    np.testing.assert_array_equal(rows["row"], np.arange(N))
    np.testing.assert_array_equal(rows["id"], ids)
    np.testing.assert_allclose(rows["distance"], tree.distances)
    clusters = {k: np.array(v) for k, v in read(tmp / "new" / "tables" / "clusters.parquet").items()}
    selected = np.load(tmp / "run" / "indices.npy")
    for t in range(tree.n_levels):
        at = clusters["level"] == t
        lab = np.array(rows[f"cluster_level{t}"])
        np.testing.assert_array_equal(lab, tree.point_labels(t))
        np.testing.assert_array_equal(clusters["cluster"][at], np.arange(tree.n_clusters[t]))
        assert clusters["size"][at].sum() == N
        np.testing.assert_array_equal(clusters["size"][at], np.bincount(lab, minlength=tree.n_clusters[t]))
        assert clusters["selected"][at].sum() == len(selected)
        np.testing.assert_array_equal(
            clusters["selected"][at], np.bincount(lab[selected], minlength=tree.n_clusters[t])
        )
        full = clusters["size"][at] > 0
        mean = np.bincount(lab, weights=tree.distances, minlength=tree.n_clusters[t])[full] / clusters["size"][at][full]
        np.testing.assert_allclose(clusters["mean_distance"][at][full], mean)
        parents = clusters["parent"][at]
        if t + 1 < tree.n_levels:
            assert ((parents >= 0) & (parents < tree.n_clusters[t + 1])).all()
            np.testing.assert_array_equal(parents, tree.labels[t + 1])
        else:
            assert (parents == -1).all()
    # a run directory given by a link: its tables written there, as sample and report read it
    os.symlink(tmp / "run", tmp / "link")
    hkmeans("export", tmp / "link")
    assert read(tmp / "run" / "assignments.parquet")["row"] == rows["row"]
    os.symlink(tmp / "new" / "tables", tmp / "out-link")
    assert_error(hkmeans("export", tmp / "run", "--out", tmp / "out-link", check=False), "is not a directory")


def test_several_target_sizes(pool):
    tmp, x = pool
    hkmeans("fit", x, "--out", tmp / "run", *FIT, "-q")
    hkmeans("sample", tmp / "run", "--target-size", "100,500,1000", "-q")
    names = set(os.listdir(tmp / "run"))
    assert {f"{s}-{n}.{e}" for n in (100, 500, 1000) for s, e in (("indices", "npy"), ("selected", "parquet"))} <= names
    assert "indices.npy" not in names and "selected.parquet" not in names
    for n in (100, 500, 1000):
        assert len(np.load(tmp / "run" / f"indices-{n}.npy")) == n
        check_selected(tmp / "run", tmp / "run" / f"selected-{n}.parquet", tmp / "run" / f"indices-{n}.npy", None)
    # the same sample as one size at a time
    hkmeans("sample", tmp / "run", "--target-size", 500, "-o", tmp / "one.npy", "-q")
    np.testing.assert_array_equal(np.load(tmp / "one.npy"), np.load(tmp / "run" / "indices-500.npy"))
    hkmeans("sample", tmp / "run", "--target-size", "100,200", "-o", tmp / "x2.npy", "-q")
    assert {"x2-100.npy", "x2-100.parquet", "x2-200.npy", "x2-200.parquet"} <= set(os.listdir(tmp))


def test_overwrite_removes_ids_and_outputs(pool):
    tmp, x = pool
    np.save(tmp / "ids.npy", int_ids())
    hkmeans("curate", x, "--out", tmp / "run", *FIT, "--ids", tmp / "ids.npy", "--target-size", "100,200", "-q")
    hkmeans("export", tmp / "run")
    (tmp / "run" / "indices-old.npy").write_text("mine")
    hkmeans("fit", x, "--out", tmp / "run", *FIT, "--overwrite", "-q")
    left = set(os.listdir(tmp / "run"))
    assert not left & {"ids.npy", "indices-100.npy", "selected-200.parquet", "assignments.parquet", "clusters.parquet"}
    assert "indices-old.npy" in left  # not a name hkmeans writes


def bad_ids(tmp, case):
    if case == "wrong length":
        np.save(tmp / "ids.npy", np.arange(N - 1))
    elif case == "one too many":
        np.save(tmp / "ids.npy", np.arange(N + 1))
    elif case == "beyond int64":
        np.save(tmp / "ids.npy", np.arange(N, dtype=np.uint64) + np.uint64(2**63))
    elif case == "blank line":
        (tmp / "ids.txt").write_text("".join(f"a{i}\n" if i != 5 else " \t\n" for i in range(N)))
        return tmp / "ids.txt"
    elif case == "duplicates":
        ids = string_ids()
        ids[2000] = ids[17]
        np.save(tmp / "ids.npy", ids)
    elif case == "duplicate lines":
        (tmp / "ids.txt").write_text("".join(f"{i % (N - 1)}\n" for i in range(N)))
        return tmp / "ids.txt"
    elif case == "empty line":
        (tmp / "ids.txt").write_text("".join(f"a{i}\n" if i != 5 else "\n" for i in range(N)))
        return tmp / "ids.txt"
    elif case == "not npy":
        (tmp / "ids.npy").write_bytes(b"not an array")
    elif case == "pickled":
        np.save(tmp / "ids.npy", np.array([object()] * N), allow_pickle=True)
    elif case == "npz":  # as many arrays as rows: their names would be the ids
        with open(tmp / "ids.npy", "wb") as f:
            np.savez(f, *np.arange(N)[:, None])
    elif case == "cut-short npz":
        np.savez(tmp / "ids.npz", np.arange(N))
        (tmp / "ids.npy").write_bytes((tmp / "ids.npz").read_bytes()[:100])
    elif case == "2-D":
        np.save(tmp / "ids.npy", np.arange(N).reshape(-1, 1))
    elif case == "floats":
        np.save(tmp / "ids.npy", np.arange(N) + 0.5)
    elif case == "missing":
        return tmp / "nothing.npy"
    elif case == "other suffix":
        (tmp / "ids.json").write_text("[]")
        return tmp / "ids.json"
    return tmp / "ids.npy"


EXPECTED = {
    "wrong length": "2999 ids for an input of 3000 rows",
    "one too many": "3001 ids for an input of 3000 rows",
    "beyond int64": "ids above 2**63 - 1",
    "blank line": "line 6 is empty",
    "duplicates": "'img/00119.jpg' is given twice (rows 17 and 2000)",
    "duplicate lines": "id 0 is given twice (rows 0 and 2999)",
    "empty line": "line 6 is empty",
    "not npy": "not a .npy file (numpy.save writes one)",
    "pickled": "a .npy array of Python objects, which are never unpickled",
    "npz": "an .npz archive; save one array with numpy.save",
    "cut-short npz": "a damaged .npz archive, not a .npy array",
    "2-D": "1-D array",
    "floats": "integers or strings",
    "missing": "no such file",
    "other suffix": ".npy, .txt or .csv",
}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_bad_ids_file(pool, case):
    tmp, x = pool
    proc = hkmeans(
        "curate", x, "--out", tmp / "run", *FIT, "--ids", bad_ids(tmp, case), "--target-size", 10, check=False
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hkmeans: error: ") and EXPECTED[case] in lines[0], proc.stderr
    assert lines[0].count(bad_ids(tmp, case).name) == 1  # the file named once, not wrapped twice
    assert not (tmp / "run").exists()


@pytest.mark.parametrize("case", ["missing column", "nulls", "id column of npy input", "both"])
def test_bad_id_column(tmp_path, case):
    X = blobs()
    x = tmp_path / "p.parquet"
    flags = ["--id-column", "key"]
    if case == "missing column":
        write_parquet(x, X, 700)
        expected = "no column 'key'"
    elif case == "nulls":
        import pyarrow as pa

        write_parquet(x, X, 700, key=pa.array([None] + list(range(1, N))))
        expected = "holds nulls"
    elif case == "id column of npy input":
        x = tmp_path / "x.npy"
        np.save(x, X)
        expected = "only from Parquet input"
    else:
        write_parquet(x, X, 700, key=np.arange(N))
        np.save(tmp_path / "ids.npy", np.arange(N))
        flags += ["--ids", tmp_path / "ids.npy"]
        expected = "not both"
    proc = hkmeans("fit", x, "--out", tmp_path / "run", *FIT, *flags, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


def test_output_names_refused(pool):
    tmp, x = pool
    hkmeans("fit", x, "--out", tmp / "run", *FIT, "-q")
    for args, expected in [
        (["--target-size", "10,10"], "given twice"),
        (["--target-size", 10, "-o", tmp / "s.parquet"], "the Parquet file goes beside it"),
        (["--target-size", 10, "-o", tmp / "run" / "ids.npy"], "that this command does not write"),
    ]:
        proc = hkmeans("sample", tmp / "run", *args, check=False)
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert not {"indices.npy", "indices-10.npy"} & set(os.listdir(tmp / "run"))
    assert not (tmp / "s.npy").exists()


def test_without_pyarrow_indices_only(pool, monkeypatch):
    tmp, x = pool
    hkmeans("fit", x, "--out", tmp / "run", *FIT, "-q")
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else find(name, *a))
    proc = hkmeans("sample", tmp / "run", "--target-size", "100,200")
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "hkmeans[parquet]" in warnings[0]
    names = set(os.listdir(tmp / "run"))
    assert {"indices-100.npy", "indices-200.npy"} <= names and not any(n.endswith(".parquet") for n in names)
    proc = hkmeans("export", tmp / "run", check=False)
    assert proc.returncode == 2 and "hkmeans[parquet]" in proc.stderr


def small_tree():
    # 6 points -> 3 clusters -> 2 clusters; cluster 2 of level 0 is empty
    return ClusterTree(
        [np.array([0, 0, 1, 1, 1, 0]), np.array([0, 1, 1])], distances=np.array([1.0, 3.0, 2.0, 4.0, 6.0, 5.0])
    )


def test_tables_by_hand():
    tree = small_tree()
    table = cluster_table(tree, selected=np.array([0, 0, 2, 5]))
    assert table.dtype.names == ("level", "cluster", "parent", "size", "selected", "mean_distance")
    np.testing.assert_array_equal(table["level"], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(table["parent"], [0, 1, 1, -1, -1])
    np.testing.assert_array_equal(table["size"], [3, 3, 0, 3, 3])
    np.testing.assert_array_equal(table["selected"], [3, 1, 0, 3, 1])
    np.testing.assert_allclose(table["mean_distance"], [3.0, 4.0, np.nan, 3.0, 4.0])

    ids = np.array(["a", "b", "c", "d", "e", "f"])
    sel = selected_table(tree, np.array([5, 0, 5, 2]), ids=ids)
    assert sel.dtype.names == ("id", "row", "times", "cluster_level0", "cluster_level1", "distance")
    np.testing.assert_array_equal(sel["id"], ["a", "c", "f"])
    np.testing.assert_array_equal(sel["times"], [1, 1, 2])
    np.testing.assert_array_equal(sel["cluster_level1"], [0, 1, 0])

    part = assignments(tree, ids=ids, start=2, stop=4)
    np.testing.assert_array_equal(part["row"], [2, 3])
    np.testing.assert_array_equal(part["id"], ["c", "d"])
    np.testing.assert_array_equal(part["distance"], [2.0, 4.0])
    with pytest.raises(ValueError, match="positions in the tree"):
        selected_table(tree, [6])


def test_text_ids_are_integers_only_in_ascii_digits(tmp_path):
    cases = {
        "42\n-7\n0\n+3\n": [42, -7, 0, 3],
        "00098\n00100\n": [98, 100],  # as pandas and NumPy read them (and earlier runs did)
        "1_000\n +5\n\u0661\u0662\n": ["1_000", " +5", "\u0661\u0662"],  # not as Python's int() does
        "9223372036854775808\n1\n": ["9223372036854775808", "1"],  # beyond int64
    }
    for text, want in cases.items():
        (tmp_path / "ids.txt").write_text(text, encoding="utf-8")
        got = load_ids(tmp_path / "ids.txt")
        assert got.dtype == (np.int64 if isinstance(want[0], int) else object), text
        assert got.tolist() == want


def test_text_ids_read_alike_whatever_the_line_ends(tmp_path):
    """CRLF lines, a BOM and trailing empty lines give the ids of plain LF lines."""
    for lines, want, kind in ((["img1", "img 2"], ["img1", "img 2"], object), (["1", "2"], [1, 2], np.int64)):
        (tmp_path / "lf.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp_path / "crlf.txt").write_bytes(("\r\n".join(lines) + "\r\n\r\n\n").encode("utf-8-sig"))
        for name in ("lf.txt", "crlf.txt"):
            got = load_ids(tmp_path / name)
            assert got.dtype == kind and got.tolist() == want, name


def test_ids_that_no_utf8_output_can_hold_are_refused():
    for ids in (np.array(["a", "b\ud800"]), ["a", "b\ud800"]):
        with pytest.raises(InputError, match=r"^ids\.npy: id at row 1 \('b\\ud800'\) is not valid Unicode"):
            check_ids(ids, 2, "ids.npy")


def test_tables_take_ids_as_the_command_line_does():
    tree = small_tree()
    ids = ["a0\x00", "b", "c" * 1000, "d", "e", "f"]
    table = assignments(tree, ids=ids)
    assert table["id"].dtype == object and table["id"].tolist() == ids  # trailing NUL kept, no <U1000 copy
    for bad, match in (([0, 1, 2, 3, 4, "a"], "integers or strings"), ([1, "1", 2, 3, 4, 5], "integers or strings")):
        with pytest.raises(ValueError, match=match):
            selected_table(tree, [0], ids=bad)
    with pytest.raises(ValueError, match="is not valid Unicode"):
        assignments(tree, ids=["a", "b\udfff", "c", "d", "e", "f"])


def test_estimator_tables():
    X = blobs()
    model = HierarchicalKMeans(**API).fit(X)
    ids = string_ids()
    rows = model.assignments(ids=ids)
    np.testing.assert_array_equal(rows["id"], ids)
    np.testing.assert_array_equal(rows["cluster_level1"], model.labels_)
    np.testing.assert_array_equal(rows["cluster_level0"], model.predict(X, level=0))
    sample = model.sample(500)
    table = model.cluster_table(sample)
    assert table["selected"][table["level"] == 1].sum() == 500
    assert table["size"][table["level"] == 0].sum() == N
    with pytest.raises(ValueError, match="one id per training sample"):
        model.assignments(ids=ids[:-1])
    # distances, not squared: to each row's level-0 centroid
    centroids = model.levels_[0].centroids
    np.testing.assert_allclose(
        rows["distance"], np.linalg.norm(X - centroids[rows["cluster_level0"]], axis=1), rtol=1e-5
    )
    np.testing.assert_allclose(model.tree_.distances, rows["distance"])


def test_ids_one_short_of_the_rows_a_tree_maps_are_refused():
    """With ``rows`` (a fit on a subset), ids must reach the largest input row: one
    short is the one-line error, not an IndexError."""
    tree = small_tree()
    rows = np.array([0, 2, 4, 5, 7, 9])
    ids = np.arange(10)
    assert list(assignments(tree, ids=ids, rows=rows)["id"]) == list(rows)
    with pytest.raises(ValueError, match=r"one id per row of the input \(10\)"):
        assignments(tree, ids=ids[:9], rows=rows)
