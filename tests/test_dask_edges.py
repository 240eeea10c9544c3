"""Edges of the Dask backend's host code that a mutation run found untested: chunk
boundaries of spilled and stored per-row files, pools read by the workers (dtype,
Parquet column), selections whose picks all fall in cluster 0, ties among the
farthest rows, centres put in groups (k >= 16) and undone in the labels, and dtypes a
user sees. Each test compares with the in-process result or plain NumPy."""

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402
import dask.array as da  # noqa: E402

import hkmeans  # noqa: E402
from hkmeans import KMeans  # noqa: E402
from hkmeans.backends import dask as dask_backend  # noqa: E402
from hkmeans.backends.cpu import CPUBackend  # noqa: E402
from hkmeans.backends.dask import storage as dask_io  # noqa: E402

from .test_dask import CHUNK, D, N, X, blobs, cluster  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with cluster(2) as c, distributed.Client(c) as cl:
        yield cl


def gathered(a, client):
    return dask_backend.compute(a, client=client)[0]


def test_selection_whose_partial_picks_are_all_in_cluster_0_is_the_in_process_one(client):
    """Cluster 0 gives some of its rows, every other cluster whole copies only: the
    smallest picks are all of cluster 0 (the last of them ends the list)."""
    rng = np.random.default_rng(0)
    n, k = 900, 3
    labels = rng.integers(0, k, n)
    scores = rng.random(n)
    sizes = np.bincount(labels, minlength=k)
    take = np.array([sizes[0] // 3, 2 * sizes[1], sizes[2]])
    args = (da.from_array(labels, chunks=200), k, take, da.from_array(scores, chunks=200))
    want = CPUBackend(X[:n]).select(labels, k, take, scores)
    np.testing.assert_array_equal(dask_backend.select(*args, client=client), want)
    np.testing.assert_array_equal(dask_backend.select(*args, client=client, sort=True), np.sort(want))


def test_select_refuses_rows_of_an_empty_cluster(client):
    labels = da.from_array(np.arange(100) % 2, chunks=30)  # cluster 2 is empty
    scores = da.from_array(np.random.default_rng(1).random(100), chunks=30)
    with pytest.raises(ValueError, match="empty cluster"):
        dask_backend.select(labels, 3, np.array([5, 5, 1]), scores, client=client)


def test_load_sees_a_lost_first_chunk(client, tmp_path):
    """A stored per-row array whose first chunk file is gone does not cover its rows,
    even though the rest ends at the right row."""
    labels = da.from_array(np.arange(N) % 7, chunks=CHUNK)
    folder = tmp_path / "step.chunks"
    dask_io.store(folder, client=client, labels=labels)
    sorted(folder.glob("labels-*.npy"))[0].unlink()
    with pytest.raises(ValueError, match="do not cover its rows"):
        dask_io.load(folder, client=client, n_rows=N)
    with pytest.raises(ValueError, match="do not cover its rows"):
        dask_io.load(folder, client=client)


def test_a_spilled_array_with_an_empty_last_chunk_reads_back(client, tmp_path):
    A = da.from_array(X[:1000], chunks=((300, 700, 0), D))
    (back,) = dask_io.spill(tmp_path, A, client=client)
    assert back.chunks == A.chunks
    np.testing.assert_array_equal(gathered(back, client), X[:1000])
    np.testing.assert_array_equal(gathered(back[1000:], client), X[:0])


def test_pool_array_of_float16_shards_computes_the_dtype_it_declares(client, tmp_path):
    (tmp_path / "shards").mkdir()
    for i, (a, b) in enumerate([(0, 700), (700, N)]):
        np.save(tmp_path / "shards" / f"s{i}.npy", X[a:b].astype(np.float16))
    A = dask_io.pool_array(tmp_path / "shards", np.float32, rows=CHUNK)
    got = gathered(A, client)
    assert A.dtype == got.dtype == np.float32
    np.testing.assert_array_equal(got, X.astype(np.float16).astype(np.float32))
    # and a fit over it is the in-memory fit of the same float32 rows
    m = KMeans(4, init="random", n_init=1, max_iter=5, random_state=0, client=client).fit(A)
    mc = KMeans(4, init="random", n_init=1, max_iter=5, random_state=0).fit(got)
    np.testing.assert_array_equal(gathered(m.labels_, client), mc.labels_)
    assert m.cluster_centers_.dtype == np.float32


def test_pool_array_reads_the_parquet_column_asked_for(client, tmp_path):
    pytest.importorskip("pyarrow")
    from .sources import write_parquet

    other = np.random.default_rng(2).normal(size=(300, 2)).astype(np.float32)
    write_parquet(tmp_path / "a.parquet", X[:300], 64, other=list(map(list, other)))
    A = dask_io.pool_array(tmp_path / "a.parquet", np.float32, column="other", rows=100)
    assert A.shape == (300, 2)
    np.testing.assert_array_equal(gathered(A, client), other)
    B = dask_io.pool_array(tmp_path / "a.parquet", np.float32, column="emb", rows=100)
    np.testing.assert_array_equal(gathered(B, client), X[:300])


def test_labels_of_grouped_centres_are_those_in_process(client):
    """With k >= 16 the Lloyd run puts the centres in groups (another order); the
    labels come back in the centres' order, as in process."""
    Xk = blobs(1500, 4, 3)
    params = dict(init="random", n_init=1, max_iter=10, random_state=0)
    kd = KMeans(20, **params).fit(da.from_array(Xk, chunks=(400, 4)))
    kc = KMeans(20, **params).fit(Xk)
    np.testing.assert_array_equal(gathered(kd.labels_, client), kc.labels_)
    np.testing.assert_allclose(kd.cluster_centers_, kc.cluster_centers_, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(gathered(kd.predict(da.from_array(Xk, chunks=(400, 4))), client), kc.labels_)


def test_farthest_rows_break_ties_by_first_rows(client):
    """Many rows at the same largest distance: the first rows, as the in-process
    reseeding takes them."""
    sqdist = np.zeros(400)
    sqdist[::7] = 3.0
    backend = dask_backend.DaskBackend(X[:400], client)
    for m in (5, 40, 57, 100):
        got = backend.farthest_rows(da.from_array(sqdist, chunks=50), m)
        np.testing.assert_array_equal(got, np.argsort(-sqdist, kind="stable")[:m])


def test_cosine_model_predicts_large_dask_rows_as_in_memory(client):
    """Under "cosine" only the rows' range is checked, not their squared distances:
    rows too large to square in float32 predict on Dask as in memory."""
    rng = np.random.default_rng(4)
    Xc = rng.normal(size=(600, 6)).astype(np.float32)
    m = KMeans(4, metric="cosine", random_state=0).fit(Xc)
    big = Xc.astype(np.float64) * 1e30
    want = m.predict(big)
    np.testing.assert_array_equal(gathered(m.predict(da.from_array(big, chunks=(200, 6))), client), want)


def test_a_tree_over_int32_dask_labels_holds_int64_as_in_memory():
    rng = np.random.default_rng(5)
    labels, up = rng.integers(0, 6, 500).astype(np.int32), np.array([0, 0, 1, 1, 2, 2])
    local = hkmeans.ClusterTree([labels, up])
    tree = hkmeans.ClusterTree([da.from_array(labels, chunks=100), up])
    assert tree.labels[0].dtype == local.labels[0].dtype == np.int64
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(np.asarray(tree.labels[0]), local.labels[0])


def test_rows_chunked_by_columns_too_fit_and_sample_as_in_memory(client):
    """Column chunks are joined into one (each task sees whole rows)."""
    params = dict(n_clusters=(6, 2), n_resamples=1, max_iter=5, init="random", random_state=0)
    md = hkmeans.HierarchicalKMeans(**params).fit(da.from_array(X[:1000], chunks=(250, 3)))
    mc = hkmeans.HierarchicalKMeans(**params).fit(X[:1000])
    for a, b in zip(md.levels_, mc.levels_):
        np.testing.assert_array_equal(np.asarray(gathered(a.labels, client)), b.labels)
        np.testing.assert_allclose(a.centroids, b.centroids, rtol=1e-5, atol=1e-5)
    kwargs = dict(strategy="closest", random_state=0)
    np.testing.assert_array_equal(md.sample(100, **kwargs), mc.sample(100, **kwargs))
    Xd = da.from_array(X[:1000], chunks=(300, 5))
    np.testing.assert_array_equal(gathered(md.predict(Xd), client), mc.predict(X[:1000]))
    np.testing.assert_allclose(gathered(md.transform(Xd), client), mc.transform(X[:1000]), rtol=1e-5, atol=1e-4)
