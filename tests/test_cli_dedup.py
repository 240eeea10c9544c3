"""``hkmeans dedup`` on generated files."""

import importlib.util
import re

import numpy as np
import pytest

import hkmeans

from .test_cli import hkmeans as run

needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow")


@pytest.fixture
def pool(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 8)).astype(np.float32)
    X[400:500] = X[:100] + 0.001 * rng.normal(size=(100, 8)).astype(np.float32)
    path = tmp_path / "emb.npy"
    np.save(path, X)
    return X, path


@needs_pyarrow
def test_writes_kept_rows_and_duplicates_with_ids(pool, tmp_path):
    import pyarrow.parquet as pq

    X, path = pool
    ids = np.array([f"img{i}" for i in range(len(X))])
    np.save(tmp_path / "ids.npy", ids)
    out = tmp_path / "out"
    proc = run("dedup", path, "--threshold", 0.99, "--ids", tmp_path / "ids.npy", "--out", out)
    api = hkmeans.dedup(X, 0.99, random_state=0)
    np.testing.assert_array_equal(np.load(out / "kept.npy"), api.kept)
    table = pq.read_table(out / "duplicates.parquet").to_pydict()
    np.testing.assert_array_equal(table["row"], api.removed)
    np.testing.assert_array_equal(table["duplicate_of_row"], api.duplicate_of[api.removed])
    assert table["id"] == [f"img{i}" for i in api.removed]
    assert table["duplicate_of_id"] == [f"img{i}" for i in api.duplicate_of[api.removed]]
    np.testing.assert_array_equal(table["similarity"], api.similarity[api.removed])
    removed = len(api.removed)
    assert proc.stdout.strip() == f"600 rows, {removed} removed ({removed / 600:.1%}), largest group 2 rows: {out}"
    assert 90 <= removed <= 110


@pytest.mark.parametrize(
    "args, match",
    [
        (["--threshold", "0"], r"in \(0, 1\]"),
        (["--threshold", "-1", "--metric", "euclidean"], ">= 0"),
        (["--threshold", "0.9", "--keep", "last"], "invalid choice"),
    ],
)
def test_bad_parameters_exit_2_with_nothing_written(pool, tmp_path, args, match):
    out = tmp_path / "out"
    proc = run("dedup", pool[1], *args, "--out", out, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert re.search(match, proc.stderr)
    assert not out.exists()


def test_nan_rows_and_busy_out_exit_2(pool, tmp_path):
    X, _ = pool
    X = X.copy()
    X[3, 2] = np.nan
    np.save(tmp_path / "bad.npy", X)
    out = tmp_path / "out"
    proc = run("dedup", tmp_path / "bad.npy", "--threshold", 0.9, "--out", out, check=False)
    assert proc.returncode == 2 and "row 3" in proc.stderr and not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run("dedup", pool[1], "--threshold", 0.9, "--out", out, check=False)
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
