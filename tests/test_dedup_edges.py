"""Edges of ``hkmeans.dedup`` and ``hkmeans dedup`` that the rule's tests leave open:
the checks of the parameters, of the rows and of a model, and the command's flags."""

import importlib.util
import re
import sys

import numpy as np
import pytest

import hkmeans
from hkmeans import HierarchicalKMeans
from hkmeans.cli import dedup as command

from . import naive
from .test_cli import assert_error
from .test_cli import hkmeans as run

needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow")


def pairs(n=30, d=4, seed=0, noise=1e-3):
    """``2 n`` rows: ``n`` random rows, then a near copy of each."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, 0] += 2
    return np.vstack([X, X + noise * rng.normal(size=(n, d))])


@pytest.mark.parametrize("threshold", [True, False])
def test_a_bool_threshold_is_refused(threshold):
    # a bool is an int to Python: True must not pass for a threshold of 1
    with pytest.raises(ValueError, match=rf"^threshold must be a finite number, got {threshold}\.$"):
        hkmeans.dedup(pairs(), threshold)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(0, 3), (5,), (4, 0), (2, 2, 2)])
def test_rows_not_a_non_empty_2d_array_are_refused_in_one_line(shape, dtype):
    X = np.ones(shape, dtype=dtype)
    with pytest.raises(ValueError, match=rf"^X must be a non-empty 2-D array, got shape {re.escape(str(shape))}\.$"):
        hkmeans.dedup(X, 0.9)


@pytest.mark.parametrize("n_clusters", [0, 21])
def test_n_clusters_outside_one_to_the_rows_is_refused(n_clusters):
    X = pairs(10)
    with pytest.raises(ValueError, match=rf"^n_clusters must be an integer in \[1, 20\], got {n_clusters}\.$"):
        hkmeans.dedup(X, 0.999, n_clusters=n_clusters)
    res = hkmeans.dedup(X, 0.999, n_clusters=20, random_state=0)  # one row per cluster: fine
    np.testing.assert_array_equal(res.kept, naive.dedup(X, 0.999, res.order)[0])


def test_the_default_number_of_clusters_is_the_rounded_square_root_of_the_rows():
    # 150 rows: round(sqrt(150)) = 12 clusters, the same clustering as n_clusters=12
    X = pairs(75)
    default = hkmeans.dedup(X, 0.99, random_state=0)
    twelve = hkmeans.dedup(X, 0.99, random_state=0, n_clusters=12)
    assert len(np.unique(default.labels)) > 6
    np.testing.assert_array_equal(default.labels, twelve.labels)
    np.testing.assert_array_equal(default.order, twelve.order)


def test_a_model_fitted_with_the_cosine_metric_gives_the_clusters():
    # rows of norms far from 1: the model's stored distances are those of unit rows
    X = pairs(100, d=6, seed=1, noise=1e-2)
    X *= np.random.default_rng(2).uniform(0.5, 3.0, size=(len(X), 1))
    model = HierarchicalKMeans((6, 2), n_resamples=1, metric="cosine", random_state=0).fit(X)
    res = hkmeans.dedup(X, 0.99, model=model)
    kept, duplicate_of, similarity = naive.dedup(X, 0.99, res.order, "cosine")
    np.testing.assert_array_equal(res.kept, kept)
    np.testing.assert_array_equal(res.duplicate_of, duplicate_of)
    np.testing.assert_array_equal(res.similarity, similarity)


def test_a_model_fitted_on_slightly_different_rows_is_refused():
    X = pairs(150, d=6, seed=3)
    model = HierarchicalKMeans((10, 2), n_resamples=1, random_state=0).fit(X)
    assert len(hkmeans.dedup(X.astype(np.float32), 0.99, model=model).kept) <= 150  # its rows, in float32: fine
    moved = X + 0.05 * np.random.default_rng(4).normal(size=X.shape)
    with pytest.raises(ValueError, match=r"^model was fitted on other data than X: pass the rows it was fitted on\.$"):
        hkmeans.dedup(moved, 0.99, model=model)


def test_a_pair_across_two_close_centroids_far_from_the_origin_is_found():
    """Centroids 1e-3 apart at a norm of 1e5: their distance, from squared norms of
    1e10, cancels to nothing in float64. The bound must still import the kept row
    0.3 from their border into the other cluster, where its duplicate lies."""
    api = sys.modules["hkmeans.dedup"]
    big, gap, t = 1e5, 1e-3, 0.4
    mid = gap / 2
    X = np.array([[big, mid - 0.3], [big, mid + 0.05], [big, mid - 5], [big, mid + 5]])
    X, sq = api._check_data(X, "euclidean", t)
    C = np.array([[big, 0.0], [big, gap]])
    res = api._search(X, sq, C, t, "euclidean", "first", np.random.default_rng(0))
    np.testing.assert_array_equal(res.labels, [0, 1, 0, 1])  # the pair straddles the border
    np.testing.assert_array_equal(res.duplicate_of, [-1, 0, -1, -1])
    np.testing.assert_array_equal(res.similarity, naive.dedup(X, t, res.order, "euclidean")[2])


# the command


@pytest.fixture
def pool(tmp_path):
    X = pairs(30).astype(np.float32)
    np.save(tmp_path / "emb.npy", X)
    return X, tmp_path / "emb.npy"


@needs_pyarrow
def test_seed_seeds_keep_random(pool, tmp_path):
    import pyarrow.parquet as pq

    X, path = pool
    api = {seed: hkmeans.dedup(X, 0.99, keep="random", random_state=seed) for seed in (0, 5)}
    assert not np.array_equal(api[0].kept, api[5].kept)  # the seed matters here
    run("dedup", path, "--threshold", 0.99, "--keep", "random", "--seed", 5, "--out", tmp_path / "out")
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "kept.npy"), api[5].kept)
    table = pq.read_table(tmp_path / "out" / "duplicates.parquet").to_pydict()
    np.testing.assert_array_equal(table["row"], api[5].removed)
    np.testing.assert_array_equal(table["duplicate_of_row"], api[5].duplicate_of[api[5].removed])


@needs_pyarrow
@pytest.mark.parametrize("n_clusters", [0, 61])
def test_bad_n_clusters_exit_2_with_nothing_written(pool, tmp_path, n_clusters):
    out = tmp_path / "out"
    proc = run("dedup", pool[1], "--threshold", 0.9, "--n-clusters", n_clusters, "--out", out, check=False)
    assert_error(proc, f"n_clusters must be an integer in [1, 60], got {n_clusters}.")
    assert not out.exists()


def test_a_bad_threshold_is_refused_before_the_input_is_read(pool, tmp_path, monkeypatch):
    monkeypatch.setattr(command, "open_pool", lambda *a, **k: pytest.fail("read the input before the threshold"))
    proc = run("dedup", pool[1], "--threshold", 1.5, "--out", tmp_path / "out", check=False)
    assert_error(proc, 'threshold must be in (0, 1] for metric="cosine"')
    assert not (tmp_path / "out").exists()


def test_a_busy_out_is_refused_before_the_search(pool, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    monkeypatch.setattr(command, "search_pool", lambda *a, **k: pytest.fail("searched before --out was checked"))
    proc = run("dedup", pool[1], "--threshold", 0.9, "--out", out, check=False)
    assert_error(proc, f"{out}: exists and is not empty; give a new or empty folder as --out.")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_a_negative_seed_is_refused_as_fit_refuses_it_before_the_input_is_read(pool, tmp_path, monkeypatch):
    monkeypatch.setattr(command, "open_pool", lambda *a, **k: pytest.fail("read the input before --seed was checked"))
    proc = run("dedup", pool[1], "--threshold", 0.9, "--seed", -1, "--out", tmp_path / "out", check=False)
    assert_error(proc, "--seed: seed must be a non-negative integer, got -1.")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("X", [[1.0, 2.0], [[[1.0, 2.0]]], [], 5.0], ids=["1-D", "3-D", "empty", "scalar"])
def test_rows_given_as_lists_of_the_wrong_shape_are_refused_in_one_line(X):
    with pytest.raises((ValueError, TypeError)) as e:
        hkmeans.dedup(X, 0.9)
    assert "\n" not in str(e.value), str(e.value)
