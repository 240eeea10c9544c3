"""The dask backend, on a LocalCluster of two worker processes on loopback.

What holds (see docs/scaling.md): for one chunking, a fixed seed gives the same tree
and the same samples on any number of workers, on the local synchronous scheduler,
and after a worker is killed mid-fit. Against the in-process backend, with the same
draws (``init="random"``, ``resample_strategy="closest"``, ``strategy="closest"``),
labels and samples are equal on well-separated data and centroids agree to float32
rounding; with other seeding or random strategies the streams differ (per-chunk on
Dask), so results differ as two seeds do.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import sklearn.base
from hypothesis import given, settings
from hypothesis import strategies as st

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402
import dask.array as da  # noqa: E402

import hkmeans  # noqa: E402
import hkmeans.tables  # noqa: E402
from hkmeans import HierarchicalKMeans, KMeans  # noqa: E402
from hkmeans.backends import dask as dask_backend  # noqa: E402
from hkmeans.backends.cpu import CPUBackend  # noqa: E402
from hkmeans.backends.dask import client as dask_client  # noqa: E402
from hkmeans.backends.dask import reductions, selection, tasks  # noqa: E402
from hkmeans.browser import cluster_data  # noqa: E402

N, D, CHUNK = 2000, 8, 500
PARAMS = dict(n_clusters=(12, 4), n_resamples=2, sample_size=10, max_iter=6, random_state=0)


def blobs(n, d, seed):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) + 8 * rng.integers(0, 6, size=(n, 1))).astype(np.float32)


X = blobs(N, D, 1)


def cluster(n_workers):
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        env={"NUMBA_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def client():
    with cluster(2) as c, distributed.Client(c) as cl:
        yield cl


def fingerprint(m):
    """Every level's labels and centroids, and three samples, gathered."""
    labels = [
        dask_backend.compute(lv.labels, client=m.client)[0] if isinstance(lv.labels, da.Array) else lv.labels
        for lv in m.levels_
    ]
    out = labels + [lv.centroids for lv in m.levels_]
    out += [
        m.sample(150, random_state=1),
        m.sample(150, strategy="closest", multiplier=2),
        m.sample(150, strategy="furthest", method="flat"),
    ]
    return out


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def reference(client):
    """The fit on the two-worker cluster, and its fingerprint."""
    m = HierarchicalKMeans(**PARAMS).fit(da.from_array(X, chunks=(CHUNK, D)))
    return m, fingerprint(m)


def test_same_seed_same_result_on_one_and_two_workers_and_locally(client, reference, tmp_path):
    _, ref = reference
    with cluster(1) as c, distributed.Client(c, set_as_default=False) as one:
        m = HierarchicalKMeans(**PARAMS, client=one).fit(da.from_array(X, chunks=(CHUNK, D)))
        assert len(one.scheduler_info()["workers"]) == 1
        # its per-row state is on that client's workers, not the default one's: what
        # gathers or counts it asks that client, outside the estimator's methods too
        # (first: sample() counts the clusters on that client and keeps the counts)
        reference_model = reference[0]
        for sample in (hkmeans.hierarchical_sampling, hkmeans.flat_sampling):
            np.testing.assert_array_equal(
                sample(m.tree_, 150, random_state=0), sample(reference_model.tree_, 150, random_state=0)
            )
        np.testing.assert_array_equal(m.cluster_table(), reference_model.cluster_table())
        np.testing.assert_array_equal(m.assignments(), reference_model.assignments())
        m.tree_.save(tmp_path / "tree.npz")
        np.testing.assert_array_equal(hkmeans.ClusterTree.load(tmp_path / "tree.npz").labels[0], ref[0])
        assert_same(fingerprint(m), ref)
    with dask.config.set(scheduler="synchronous"):
        m = HierarchicalKMeans(**PARAMS).fit(da.from_array(X, chunks=(CHUNK, D)))
        assert_same(fingerprint(m), ref)


def test_a_fit_is_a_tree_of_dask_arrays_and_samples_keep_their_invariants(reference):
    m, (lab0, lab1, c0, c1, s_random, s_closest, s_flat) = reference
    assert isinstance(m.levels_[0].labels, da.Array) and isinstance(m.labels_, da.Array)
    assert isinstance(m.tree_.distances, da.Array)
    assert c0.shape == (12, D) and c1.shape == (4, D)
    for s, multiplier in ((s_random, 1), (s_closest, 2), (s_flat, 1)):
        assert s.dtype == np.int64 and len(s) == 150 and np.all(np.diff(s) >= 0)
        assert np.bincount(s, minlength=N).max() <= multiplier
    # per-cluster counts are the water-filled targets of the in-process sampler
    tree = m.tree_
    from hkmeans import ClusterTree, hierarchical_sampling

    local = ClusterTree(
        [np.asarray(tree.labels[0]), tree.labels[1]], centroids=tree.centroids, distances=np.asarray(tree.distances)
    )
    for kwargs in (dict(random_state=1), dict(strategy="closest", multiplier=2, random_state=5)):
        got = hierarchical_sampling(tree, 150, **kwargs)
        want = hierarchical_sampling(local, 150, **kwargs)
        np.testing.assert_array_equal(np.bincount(lab0[got], minlength=12), np.bincount(lab0[want], minlength=12))
        if "strategy" in kwargs:  # distances rank the rows alike: the same rows
            np.testing.assert_array_equal(got, want)


def test_labels_predict_transform_are_dask_arrays_equal_to_in_memory_prediction(reference):
    m, (lab0, *_) = reference
    Xd = da.from_array(X, chunks=(300, D))
    p, t, p0 = m.predict(Xd), m.transform(Xd), m.predict(Xd, level=0)
    assert all(isinstance(a, da.Array) for a in (m.labels_, p, t, p0))
    want = m.levels_[1].labels[CPUBackend(X).assign(m.levels_[0].centroids)[0]]
    np.testing.assert_array_equal(p.compute(), want)
    np.testing.assert_array_equal(m.labels_.compute(), want)
    np.testing.assert_array_equal(p0.compute(), lab0)
    np.testing.assert_allclose(
        t.compute(), np.sqrt(((X[:, None, :] - m.cluster_centers_[None]) ** 2).sum(-1)), rtol=1e-4, atol=1e-3
    )
    assert m.score(Xd) == pytest.approx(m.score(X), rel=1e-6)


@pytest.mark.parametrize("sampled", [dict(max_points_per_centroid=40), dict(init_points_per_centroid=10)])
def test_sampled_training_agrees_with_the_in_process_backend(client, sampled):
    # the sample is drawn alike and fitted (or seeded: greedily) in memory
    params = dict(n_clusters=(12,), n_resamples=0, max_iter=20, random_state=0, **sampled)
    md = HierarchicalKMeans(**params).fit(da.from_array(X, chunks=(CHUNK, D)))
    mc = HierarchicalKMeans(**params).fit(X)
    np.testing.assert_array_equal(np.asarray(md.levels_[0].labels), mc.levels_[0].labels)
    np.testing.assert_allclose(md.levels_[0].centroids, mc.levels_[0].centroids, rtol=1e-6)
    flat = dict(init="random", n_init=1, max_iter=20, random_state=0, **sampled)
    kd, kc = KMeans(12, **flat).fit(da.from_array(X, chunks=(CHUNK, D))), KMeans(12, **flat).fit(X)
    assert kd.inertia_ == pytest.approx(kc.inertia_, rel=1e-9)  # every row's distance, once


def test_integer_rows_and_empty_clusters_as_in_process(client):
    """int64 rows are fitted in float64 (as in process: float32 would round values of
    2**25), and clusters left empty are reseeded from the same far rows."""
    rng = np.random.default_rng(0)
    Xi = np.round(X * 100).astype(np.int64) + 2**25
    kd = KMeans(5, init="random", n_init=1, random_state=0).fit(da.from_array(Xi, chunks=(CHUNK, D)))
    kc = KMeans(5, init="random", n_init=1, random_state=0).fit(Xi)
    assert kd.cluster_centers_.dtype == kc.cluster_centers_.dtype == np.float64
    np.testing.assert_allclose(kd.cluster_centers_, kc.cluster_centers_, rtol=1e-12)
    # 3 points repeated 180 times and 60 far rows: random starts leave clusters empty
    few = np.concatenate([np.repeat(rng.normal(size=(3, D)), 180, axis=0), 50 + rng.normal(size=(60, D))])
    few = few[rng.permutation(len(few))].astype(np.float32)
    for seed in range(3):
        kd = KMeans(8, init="random", n_init=1, random_state=seed).fit(da.from_array(few, chunks=(100, D)))
        kc = KMeans(8, init="random", n_init=1, random_state=seed).fit(few)
        np.testing.assert_array_equal(kd.labels_.compute(), kc.labels_)
        np.testing.assert_allclose(kd.cluster_centers_, kc.cluster_centers_, rtol=1e-6)


def test_agrees_with_the_in_process_backend_on_the_same_draws(client):
    # sample_size 200: level 0's clusters (about 170 rows) are taken whole, then some
    for sample_size in (10, 200):
        params = dict(PARAMS, init="random", sample_size=sample_size)
        md = HierarchicalKMeans(**params).fit(da.from_array(X, chunks=(CHUNK, D)))
        mc = HierarchicalKMeans(**params).fit(X)
        for a, b in zip(md.levels_, mc.levels_):
            np.testing.assert_array_equal(np.asarray(a.labels), b.labels)
            np.testing.assert_allclose(a.centroids, b.centroids, rtol=1e-5, atol=1e-5)
    kwargs = dict(strategy="closest", multiplier=2, random_state=3)
    np.testing.assert_array_equal(md.sample(300, **kwargs), mc.sample(300, **kwargs))
    # the flat estimator too, and backend="dask" on an in-memory array
    kd = KMeans(5, init="random", n_init=1, random_state=0, backend="dask").fit(X)
    kc = KMeans(5, init="random", n_init=1, random_state=0).fit(X)
    assert isinstance(kd.labels_, da.Array)
    np.testing.assert_array_equal(kd.labels_.compute(), kc.labels_)
    np.testing.assert_allclose(kd.cluster_centers_, kc.cluster_centers_, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_worker_killed_mid_fit_leaves_the_result_unchanged(client, reference):
    _, ref = reference
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    fitting, killed = threading.Event(), []

    def kill():
        fitting.wait()
        time.sleep(1.0)
        if fitting.is_set():  # still fitting: mid-fit
            try:
                client.run(lambda: os.kill(os.getpid(), signal.SIGKILL), workers=[victim])
            except Exception:
                pass  # the worker died before answering
            killed.append(True)

    thread = threading.Thread(target=kill)
    thread.start()
    fitting.set()
    m = HierarchicalKMeans(**dict(PARAMS, max_iter=40)).fit(da.from_array(X, chunks=(CHUNK, D)))
    fitting.clear()
    thread.join()
    assert killed, "the fit ended before the worker was killed: lengthen the fit"
    client.wait_for_workers(2, timeout=60)
    assert pids[victim] not in client.run(os.getpid).values()  # a new process replaced it
    after_the_kill = fingerprint(m)
    with dask.config.set(scheduler="synchronous"):  # the same result as on any workers
        m = HierarchicalKMeans(**dict(PARAMS, max_iter=40)).fit(da.from_array(X, chunks=(CHUNK, D)))
        assert_same(after_the_kill, fingerprint(m))


def test_a_resampling_subset_on_the_workers_holds_the_selected_rows(client):
    rng = np.random.default_rng(4)
    n, k = 1700, 9
    labels = da.from_array(rng.integers(0, k, n), chunks=300)
    scores = da.from_array(rng.integers(0, 50, n).astype(np.float64), chunks=300)  # ties: broken by row
    Xd = da.from_array(X[:n], chunks=(300, D))
    sizes = np.bincount(labels.compute(), minlength=k)
    take = np.minimum(sizes, 60)
    take[:3] = sizes[:3] * 2 + 5  # whole copies and then some
    rows = dask_backend.select(labels, k, take, scores, sort=True)
    in_process = CPUBackend(X[:n]).select(labels.compute(), k, take, scores.compute())
    np.testing.assert_array_equal(dask_backend.select(labels, k, take, scores), in_process)  # in its order too
    got = dask_backend.subset(Xd, labels, k, take, scores)
    assert got.chunks[0] == tuple(m for m in got.chunks[0] if m > 0)
    np.testing.assert_array_equal(got.compute(), X[rows])


def test_a_pickled_fit_predicts_and_says_where_its_per_row_state_is(client, reference, tmp_path):
    """A copy of a fit on Dask, in this process or another, carries its centroids and
    no futures of the cluster: it predicts as the fit does; its per-row state (labels,
    distances, sampling) raises one line saying how to keep it. Copies made with the
    copy module, in this process, keep that state."""
    import copy
    import pickle

    m = reference[0]
    for same in (copy.copy(m), copy.deepcopy(m)):
        np.testing.assert_array_equal(same.sample(50, random_state=0), m.sample(50, random_state=0))
        np.testing.assert_array_equal(*dask_backend.compute(same.labels_, m.labels_, client=client))
    blob = pickle.dumps(m)
    assert b"distributed" not in blob  # no futures, no client
    copied = pickle.loads(blob)
    np.testing.assert_array_equal(copied.predict(X[:50]), m.predict(X[:50]))
    again = pickle.loads(pickle.dumps(copied))  # a copy pickles again
    np.testing.assert_array_equal(again.predict(X[:50]), m.predict(X[:50]))
    elsewhere = subprocess.run(  # where dask is not installed
        [
            sys.executable,
            "-c",
            "import pickle, sys; sys.modules['dask'] = sys.modules['distributed'] = None; "
            "m, X = pickle.loads(sys.stdin.buffer.read()); sys.stdout.buffer.write(pickle.dumps(m.predict(X)))",
        ],
        input=pickle.dumps((m, X[:50])),
        capture_output=True,
        check=True,
    )
    np.testing.assert_array_equal(pickle.loads(elsewhere.stdout), m.predict(X[:50]))
    np.testing.assert_array_equal(copied.transform(X[:50]), m.transform(X[:50]))
    np.testing.assert_array_equal(copied.tree_.sizes(0), m.tree_.sizes(0))
    assert copied.labels_.shape == m.labels_.shape
    uses = [
        lambda: copied.sample(50, random_state=0),
        lambda: hkmeans.hierarchical_sampling(copied.tree_, 50, random_state=0),
        lambda: np.asarray(copied.labels_),
        lambda: copied.cluster_table(),
        lambda: copied.tree_.save(tmp_path / "copy.npz"),
        lambda: pickle.loads(pickle.dumps(copied.levels_[0])).sqdist[:3],
        lambda: again.tree_.members(0),
        lambda: np.array_equal(copied.labels_, reference[1][1]),  # NumPy would answer False
        lambda: copied.labels_ == 0,  # Python would answer False
        lambda: np.sum(copied.labels_),
        lambda: copied.labels_ + 1,
        lambda: bool(copied.labels_),
    ]
    for use in uses:
        with pytest.raises(ValueError, match=r"^this object was unpickled from a fit on Dask[^\n]*tree_\.save"):
            use()
    unpickled = pickle.loads(pickle.dumps(HierarchicalKMeans(client=client)))
    assert unpickled.client is None  # a connection does not travel: the copy uses the default client
    assert copy.deepcopy(HierarchicalKMeans(client=client)).client is client  # in process, it is shared
    model = HierarchicalKMeans(n_clusters=[7, 2], client=client).set_output(transform="default")
    cloned = sklearn.base.clone(model)  # as a grid search or a pipeline clones it
    assert cloned.client is client and model.client is client
    assert cloned.get_params()["n_clusters"] == [7, 2] and cloned._sklearn_output_config == {"transform": "default"}
    m.tree_.save(tmp_path / "tree.npz")  # what the message says to do
    loaded = hkmeans.ClusterTree.load(tmp_path / "tree.npz")
    kept = pickle.loads(pickle.dumps(loaded))
    np.testing.assert_array_equal(kept.labels[0], reference[1][0])
    np.testing.assert_array_equal(
        hkmeans.hierarchical_sampling(kept, 50, random_state=0),
        hkmeans.hierarchical_sampling(loaded, 50, random_state=0),
    )


def test_a_subset_with_chunks_of_no_rows_spills_and_reads_back(client, tmp_path, monkeypatch):
    """Chunks without a picked row are left out of the subset, in files as in memory,
    and the subset's passes read what was picked."""
    from hkmeans.backends.dask.storage import source_of

    n, k = 1700, 9
    labels = np.arange(n) % 8
    labels[1500:] = 8  # the last chunk: cluster 8 only, of which none is taken
    take = np.bincount(labels, minlength=k) // 2
    take[8] = 0
    scores = np.random.default_rng(5).random(n)
    Xd = da.from_array(X[:n], chunks=(300, D))
    with dask.config.set({"hkmeans.scratch": str(tmp_path)}):
        data = dask_backend.DaskBackend(Xd, client)
        args = (da.from_array(labels, chunks=300), k, take, da.from_array(scores, chunks=300))
        rows = dask_backend.select(*args, sort=True)
        monkeypatch.setattr(hkmeans._config, "DASK_CLIENT_SUBSET_BYTES", 0)  # kept on the workers
        sub, _ = data.resampling_subset(*args)
    assert len(sub.rows) == 5 and all(m > 0 for m in sub.rows)
    np.testing.assert_array_equal(dask_backend.compute(sub.X, client=client)[0], X[rows])
    assert source_of(sub.X) is not None  # the subset's passes read its files inside their tasks
    assert sub.mean_variance() == pytest.approx(float(np.mean(np.var(X[rows].astype(np.float64), axis=0))))
    np.testing.assert_array_equal(sub.take([0, len(rows) - 1, 3]), X[rows[[0, -1, 3]]])


def test_large_resampling_subsets_stay_on_the_workers_same_result_anywhere(client, monkeypatch):
    from hkmeans import _config

    monkeypatch.setattr(_config, "DASK_CLIENT_SUBSET_BYTES", 0)
    params = dict(PARAMS, sample_size=None, max_iter=20)  # converged enough to compare
    m = HierarchicalKMeans(**params).fit(da.from_array(X, chunks=(CHUNK, D)))
    with dask.config.set(scheduler="synchronous"):
        local = HierarchicalKMeans(**params).fit(da.from_array(X, chunks=(CHUNK, D)))
    assert_same(fingerprint(m), fingerprint(local))
    # a clustering at least about as good as with the subsets clustered on the client
    monkeypatch.setattr(_config, "DASK_CLIENT_SUBSET_BYTES", 1 << 40)
    with dask.config.set(scheduler="synchronous"):
        gathered = HierarchicalKMeans(**params).fit(da.from_array(X, chunks=(CHUNK, D)))
    assert -m.score(X) <= 1.05 * -gathered.score(X)


@pytest.mark.parametrize("chunks", [(1000, 500), (500, 1000), (1000, None)], ids=["finer", "coarser", "in memory"])
def test_cluster_table_of_labels_and_distances_chunked_apart(client, chunks):
    """A tree takes distances chunked otherwise than its labels, or in memory beside
    them: its table is the in-memory tree's."""
    rng = np.random.default_rng(0)
    labels, dist, up = rng.integers(0, 12, 4000), rng.random(4000), rng.integers(0, 3, 12)
    selected = np.array([5, 5, 3999, 0])
    expected = hkmeans.tables.cluster_table(hkmeans.ClusterTree([labels, up], distances=dist), selected)
    d = dist if chunks[1] is None else da.from_array(dist, chunks=chunks[1])
    tree = hkmeans.ClusterTree([da.from_array(labels, chunks=chunks[0]), up], distances=d)
    got = hkmeans.tables.cluster_table(tree, selected)
    for name in expected.dtype.names:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12)


def test_report_browser_of_a_dask_tree_is_the_in_memory_trees(client):
    """The browser's data (sizes, curated counts, mean distances, example members)
    is found chunk by chunk on the workers and equals that of the same tree in memory."""
    rng = np.random.default_rng(1)
    labels, dist, up = rng.integers(0, 12, 4000), rng.random(4000), rng.integers(0, 3, 12)
    selected = rng.choice(4000, 700, replace=False)
    expected = cluster_data(hkmeans.ClusterTree([labels, up], distances=dist), selected, max_clusters=5)
    tree = hkmeans.ClusterTree([da.from_array(labels, chunks=700), up], distances=da.from_array(dist, chunks=700))
    got = cluster_data(tree, selected, max_clusters=5)
    for a, b in zip(got["levels"], expected["levels"]):
        assert a["d"] == pytest.approx(b["d"], abs=2e-4)
        assert {**a, "d": None} == {**b, "d": None}


@pytest.mark.slow
@pytest.mark.parametrize("on_workers", [False, True], ids=["small subsets", "subsets on the workers"])
def test_the_client_never_holds_an_n_long_array(client, monkeypatch, on_workers):
    """Everything gathered is checked: no array with a dimension of n / 4 or more, and
    no implicit computation of a dask array (``np.asarray``, ``bool``, ``float``); with
    the resampling subsets kept on the workers, even at the default ``sample_size``
    (subsets of n / 2 rows)."""
    from hkmeans import _config

    if on_workers:
        monkeypatch.setattr(_config, "DASK_CLIENT_SUBSET_BYTES", 0)
    n = 4000
    Xd = da.from_array(blobs(n, D, 2), chunks=(500, D))
    gathered = []
    real = dask_backend.compute

    def watched(*collections, client=None):
        out = real(*collections, client=client)
        gathered.append(out)
        return out

    def walk(obj):
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                for o in obj.ravel():
                    yield from walk(o)
            else:
                yield obj
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                yield from walk(o)
        elif isinstance(obj, dict):
            for o in obj.values():
                yield from walk(o)

    def refuse(self, *args, **kwargs):
        raise AssertionError("a dask array was computed implicitly on the client")

    from hkmeans.backends.dask import arrays, backend, storage

    for module in (dask_client, reductions, selection, storage, backend, arrays):  # every caller's name
        if hasattr(module, "compute"):
            monkeypatch.setattr(module, "compute", watched)
    for name in ("__array__", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(da.Array, name, refuse)
    m = HierarchicalKMeans(**dict(PARAMS, sample_size=None if on_workers else 5)).fit(Xd)
    m.sample(300, random_state=0)
    m.sample(300, strategy="closest", multiplier=3)
    table = m.cluster_table(m.sample(300, random_state=0))  # summed on the workers
    assert table["selected"][table["level"] == 0].sum() == 300
    browsed = cluster_data(m.tree_, m.sample(300, random_state=0))  # examples found on the workers
    assert sum(len(e) for e in browsed["levels"][0]["e"]) == min(n, 12 * PARAMS["n_clusters"][0])
    biggest = max(max(a.shape, default=0) for out in gathered for a in walk(out))
    assert gathered and biggest < n // 4


def test_bad_input_gives_one_line_errors_before_work(client):
    bad = X.copy()
    bad[1234, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(row 1234 first\)"):
        HierarchicalKMeans(**PARAMS).fit(da.from_array(bad, chunks=(CHUNK, D)))
    huge = X.astype(np.float64)
    huge[1234, 3] = 1e200  # squared distances overflow float64, as in memory
    with pytest.raises(ValueError, match=r"^X has values up to 1e\+200 .* overflow float64 .*; scale the data\.$"):
        HierarchicalKMeans(**PARAMS).fit(da.from_array(huge, chunks=(CHUNK, D)))
    fitted = KMeans(4, random_state=0).fit(X.astype(np.float64))
    for method in (fitted.predict, fitted.transform):
        with pytest.raises(ValueError, match=r"overflow float64"):
            method(da.from_array(huge, chunks=(CHUNK, D))).compute()
    narrow = X.astype(np.float64)
    narrow[1234, 3] = 1e39  # beyond the float32 model's range: named so, as in memory, not as infinity
    for method in (KMeans(4, random_state=0).fit(X).predict, HierarchicalKMeans(**PARAMS).fit(X).predict):
        for rows in (narrow, da.from_array(narrow, chunks=(CHUNK, D))):
            with pytest.raises(ValueError, match=r"^X has values up to 1e\+39 .*beyond float32's range"):
                np.asarray(method(rows))
    model = HierarchicalKMeans(**PARAMS, metric="cosine")
    assert model.fit(da.from_array(huge, chunks=(CHUNK, D))).n_iter_  # cosine: the rows are normalised first
    with pytest.raises(ValueError, match="2-D array"):
        HierarchicalKMeans(**PARAMS).fit(da.from_array(X[:, 0], chunks=CHUNK))
    with pytest.raises(ValueError, match='backend="cpu" takes an in-memory array'):
        HierarchicalKMeans(**PARAMS, backend="cpu").fit(da.from_array(X, chunks=(CHUNK, D)))
    with pytest.raises(ValueError, match="n_splits > 1 at level 0"):
        HierarchicalKMeans((12, 4), n_resamples=0, n_splits=(4, 1)).fit(da.from_array(X, chunks=(CHUNK, D)))
    with pytest.raises(ValueError, match="backend must be one of"):
        HierarchicalKMeans(**PARAMS, backend="spark").fit(X)


def test_device_cuda_on_workers_without_a_gpu_is_one_line_before_work(client):
    errors = client.run(dask_client._cuda_error)
    if not any(errors.values()):
        pytest.skip("every worker sees a GPU (or the simulator): the fit would run")
    before = set(client.who_has())
    with pytest.raises(RuntimeError, match=r"^worker tcp://127\.0\.0\.1:\d+: device='cuda' ") as info:
        HierarchicalKMeans(**PARAMS, device="cuda").fit(da.from_array(X, chunks=(CHUNK, D)))
    assert "\n" not in str(info.value)
    assert set(client.who_has()) <= before  # no task ran


def test_without_dask_a_one_line_import_error():
    code = (
        "import sys; sys.modules['dask'] = None; import numpy as np; from hkmeans import HierarchicalKMeans; "
        "HierarchicalKMeans(4, backend='dask').fit(np.random.rand(40, 2))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode != 0 and last.startswith("ImportError:") and 'pip install "hkmeans[dask]"' in last


def test_import_hkmeans_does_not_import_dask():
    code = (
        "import sys, hkmeans; hkmeans.HierarchicalKMeans(4).fit([[0.0], [1.0], [2.0], [3.0]]); "
        "assert 'dask' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_embedded_cluster_layout_never_oversubscribes():
    for cores in (1, 2, 3, 4, 8, 16, 64):
        workers, threads = dask_backend.cluster_layout(cores)
        assert workers >= 1 and threads >= 1 and workers * threads <= cores


WORKER_THREADS_SCRIPT = """
import os, numba, numpy as np
import {module}  # at the top: a spawned worker imports it, and Numba, before its nanny sets the environment
from numba.np.ufunc import parallel

def threads(_):
    import hkmeans.backends.dask  # what a task's function imports first
    from hkmeans._threads import _first_launch
    _first_launch(np.zeros(1))  # Numba's threads start
    numba.njit(lambda x: x + 1)(1)  # a kernel compiled after that: Numba reads its settings again
    return numba.config.NUMBA_NUM_THREADS, int(os.environ["NUMBA_NUM_THREADS"]), parallel._is_initialized

if __name__ == "__main__":
    cores = len(os.sched_getaffinity(0)) + 1  # threads unlike Numba's default: one per usable CPU
    {cluster}
    print(*client.submit(threads, 0, pure=False).result())
"""
CLUSTERS = {
    # a cluster of the user's, and a script of the hkmeans command's kind
    "hkmeans": "import distributed; client = distributed.Client(distributed.LocalCluster("
    "1, threads_per_worker=1, env={'NUMBA_NUM_THREADS': str(cores)}, dashboard_address=None))",
    # a cluster hkmeans starts, and a script that imports the Dask backend at its top (as
    # docs/scaling.md's pool_array example does)
    "hkmeans.backends.dask": "client = hkmeans.backends.dask.local_client(workers=1, cores=cores)",
}


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs os.sched_getaffinity")
@pytest.mark.parametrize("module", list(CLUSTERS))
def test_workers_take_the_threads_they_are_given_whatever_the_script_imported(tmp_path, module):
    """A spawned worker imports the parent's script, and with it Numba, before its
    nanny sets ``NUMBA_NUM_THREADS``: it runs on the threads it is given, and a kernel
    it compiles after its threads started compiles (it raised, and a first ``hkmeans
    fit --workers`` failed at every try)."""
    script = tmp_path / "script.py"
    script.write_text(WORKER_THREADS_SCRIPT.format(module=module, cluster=CLUSTERS[module]))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    config, given, started = out.stdout.split()
    assert started == "True" and int(config) == int(given) == len(os.sched_getaffinity(0)) + 1


def test_pool_array_reads_shards_on_the_workers_and_store_load_round_trip(client, tmp_path):
    from hkmeans.backends.dask import storage as dask_io

    (tmp_path / "shards").mkdir()
    for i, (a, b) in enumerate([(0, 700), (700, 1500), (1500, N)]):
        np.save(tmp_path / "shards" / f"s{i}.npy", X[a:b].astype(np.float16))
    A = dask_io.pool_array(tmp_path / "shards", np.float32, rows=CHUNK)
    assert A.chunks[0] == (CHUNK,) * (N // CHUNK) and A.dtype == np.float32
    np.testing.assert_array_equal(dask_backend.compute(A, client=client)[0], X.astype(np.float16).astype(np.float32))
    labels = da.from_array(np.arange(N) % 7, chunks=CHUNK)
    folder = tmp_path / "step.chunks"
    dask_io.store(folder, client=client, labels=labels)
    assert len(list(folder.glob("labels-*.npy"))) == N // CHUNK
    back = dask_io.load(folder, client=client)["labels"]
    assert back.chunks == labels.chunks
    np.testing.assert_array_equal(dask_backend.compute(back, client=client)[0], np.arange(N) % 7)
    sorted(folder.glob("labels-*.npy"))[-1].unlink()  # the last chunk lost: seen given the rows
    assert dask_backend.compute(dask_io.load(folder, client=client)["labels"], client=client)[0].size == N - CHUNK
    with pytest.raises(ValueError, match="do not cover its rows"):
        dask_io.load(folder, client=client, n_rows=N)
    next(iter(sorted(folder.glob("labels-*.npy"))[1:2])).unlink()  # a chunk lost
    with pytest.raises(ValueError, match="do not cover its rows"):
        dask_io.load(folder, client=client)


def test_a_subset_file_rewritten_at_its_path_is_read_anew_by_the_workers(client, tmp_path):
    # the workers outlive a run: a rerun's subset at the same path must not hit their cache
    from hkmeans.backends.dask import storage as dask_io
    from hkmeans.io import save_npy

    np.save(tmp_path / "x.npy", X)
    subset = tmp_path / "rows.npy"
    for rows in (np.arange(0, N, 2), np.arange(1, N, 2)):  # the same shape, other rows
        save_npy(subset, rows)
        A = dask_io.pool_array(tmp_path / "x.npy", np.float32, subset_indices=subset, rows=CHUNK)
        np.testing.assert_array_equal(dask_backend.compute(A, client=client)[0], X[rows])


def test_spill_writes_one_file_per_chunk_and_reads_any_slice_back(client, tmp_path):
    import gc

    from hkmeans.backends.dask import storage as dask_io

    A = da.from_array(X, chunks=((300, 700, 0, 1000), D))
    (back,) = dask_io.spill(tmp_path, A, client=client)
    assert back.chunks == A.chunks
    assert len(list(tmp_path.rglob("*.npy"))) == 4
    for got in (back, back[250:1300], back[[5, 1999, 301, 5]], back.rechunk((650, D))[:, 2:5]):
        want = X[250:1300] if got.shape[0] == 1050 else None
        want = X[[5, 1999, 301, 5]] if got.shape[0] == 4 else want
        want = X[:, 2:5] if got.shape[1] == 3 else (X if want is None else want)
        np.testing.assert_array_equal(dask_backend.compute(got, client=client)[0], want)
    from hkmeans.backends.in_memory import normalize_rows

    unit = dask_io.map_rows(back, normalize_rows)  # read and mapped by the tasks that use it
    assert dask_io.source_of(unit) is not None and dask_io.source_of(back.persist()) is None
    np.testing.assert_allclose(dask_backend.compute(unit, client=client)[0], normalize_rows(X), rtol=1e-6)
    parts = reductions.gather_blocks(reductions.map_chunks([unit], tasks.moments_block, None), client)
    np.testing.assert_allclose(sum(p[0] for p in parts), normalize_rows(X).sum(axis=0, dtype=np.float64), rtol=1e-6)
    del back, got, unit
    gc.collect()
    assert list(tmp_path.iterdir()) == []  # the folder goes with the last array reading it


def test_scratch_folder_comes_from_dask_config_and_local_clusters(client, tmp_path):
    with dask.config.set({"hkmeans.scratch": str(tmp_path)}):
        assert dask_backend.scratch_folder(client) == str(tmp_path)
    with dask.config.set({"hkmeans.scratch": False}):
        assert dask_backend.scratch_folder(client) is None
    assert dask_backend.scratch_folder(client) is None  # a cluster hkmeans did not start: worker memory
    with dask.config.set(scheduler="synchronous"):
        assert dask_backend.scratch_folder() is None


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="stale scratch folders are found by their owner's lock")
def test_scratch_folders_of_killed_processes_are_removed_and_no_other(tmp_path):
    """A process killed before its exit leaves its scratch folder: the next cluster
    hkmeans starts removes it (its lock is free), and nothing else: a live process's
    folder, one without a lock file, a link and another name."""
    import fcntl

    def folder(name, lock=True):
        (tmp_path / name).mkdir()
        (tmp_path / name / "labels.npy").write_bytes(b"per-row state")
        if lock:
            (tmp_path / name / dask_client.SCRATCH_LOCK).touch()
        return tmp_path / name

    dead, live, unlocked = (
        folder("hkmeans-scratch-dead"),
        folder("hkmeans-scratch-live"),
        folder("hkmeans-scratch-old", False),
    )
    folder("other-scratch")
    target = folder("target")
    (tmp_path / "hkmeans-scratch-link").symlink_to(target)
    held = open(live / dask_client.SCRATCH_LOCK)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # its process alive
    owner = type("Client", (), {})()
    try:
        with dask.config.set({"temporary-directory": str(tmp_path)}):
            dask_client._own_scratch(owner)
        own = dask_client._LOCAL_SCRATCH[owner]
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == sorted(
            [
                "hkmeans-scratch-live",
                "hkmeans-scratch-old",
                "other-scratch",
                "target",
                "hkmeans-scratch-link",
                os.path.basename(own),
            ]
        )
        assert (target / "labels.npy").read_bytes() == b"per-row state"
        with open(os.path.join(own, dask_client.SCRATCH_LOCK)) as f:  # the new one is locked while this process lives
            with pytest.raises(BlockingIOError):
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.close()  # the live one's process ends: removed by the next start, the new one kept
        assert dask_client.remove_stale_scratch(str(tmp_path)) == [str(live)]
        assert os.path.isdir(own) and os.path.isdir(unlocked) and not dead.exists()
    finally:
        held.close()


def _array_bytes(obj) -> int:
    """Bytes of the NumPy arrays in ``obj`` (through object arrays, lists, dicts)."""
    if isinstance(obj, np.ndarray):
        return sum(map(_array_bytes, obj.ravel())) if obj.dtype == object else obj.nbytes
    if isinstance(obj, (list, tuple)):
        return sum(map(_array_bytes, obj))
    if isinstance(obj, dict):
        return sum(map(_array_bytes, obj.values()))
    return 0


def _worker_bytes(client, collection) -> int:
    """Bytes of the arrays the workers hold for the keys of ``collection``."""
    keys = set(dask.core.flatten(collection.__dask_keys__()))

    def held(dask_worker):
        return sum(_array_bytes(dask_worker.data[k]) for k in keys if k in dask_worker.data)

    return sum(client.run(held).values())


def test_per_row_state_in_a_scratch_folder_not_in_worker_memory(client, reference, tmp_path):
    """With a scratch folder, a Lloyd run's labels, distances and bounds and a level's
    labels are files, one per chunk: the workers' memory holds O(k x d) per chunk,
    not O(rows); the result is the same as with the state in their memory."""
    import gc

    _, ref = reference
    Xd = da.from_array(X, chunks=(CHUNK, D))
    held = {}
    for where in (None, str(tmp_path)):
        with dask.config.set({"hkmeans.scratch": where or False}):
            data = dask_backend.DaskBackend(Xd, client)
            run = data.lloyd_run(np.array([0, 12]), bounds=True)
            run.step(X[:12])
            run.step(X[12:24])
            held[where] = _worker_bytes(client, run.blocks)
            labels, _, _ = run.finish(np.arange(12))
            distributed.wait(labels)
            held[where, "labels"] = _worker_bytes(client, labels)
    assert held[None] >= N * 16 and held[None, "labels"] >= N * 8  # in memory: every row's state
    sums = Xd.numblocks[0] * 12 * (D + 2) * 8  # per chunk: float64 sums, counts, rows changed
    assert held[str(tmp_path)] <= sums and held[str(tmp_path), "labels"] == 0  # in files: only the sums
    assert len(list(tmp_path.glob("lloyd-*"))) == 0  # the passes' files, gone once finished
    with dask.config.set({"hkmeans.scratch": str(tmp_path / "fit")}):
        m = HierarchicalKMeans(**PARAMS).fit(Xd)
        assert list((tmp_path / "fit").rglob("*.npy"))
        assert_same(fingerprint(m), ref)
    del m, labels, run, data
    gc.collect()
    assert not list(tmp_path.rglob("*.npy"))


def test_the_passes_read_their_chunks_inside_their_own_tasks(client, reference, tmp_path, monkeypatch):
    """Rows from shards and per-row state in files are read by the tasks that use
    them: no task of a fit is a chunk's read on its own (a read the scheduler could
    run ahead of the passes, one chunk more held per read); the result is the same."""
    from hkmeans.backends.dask import storage as dask_io

    names = set()

    def recorded(source, chunks):
        out = rows_array(source, chunks)
        names.add(out.name)
        return out

    rows_array = dask_io.rows_array
    monkeypatch.setattr(dask_io, "rows_array", recorded)
    (tmp_path / "shards").mkdir()
    for i, (a, b) in enumerate([(0, 700), (700, 1500), (1500, N)]):
        np.save(tmp_path / "shards" / f"s{i}.npy", X[a:b])
    with dask.config.set({"hkmeans.scratch": str(tmp_path / "scratch")}), distributed.get_task_stream(client) as ts:
        m = HierarchicalKMeans(**PARAMS).fit(dask_io.pool_array(tmp_path / "shards", np.float32, rows=CHUNK))
        m.sample(150, random_state=1), m.sample(150, strategy="closest", multiplier=2)
    assert_same(fingerprint(m), reference[1])  # computing the labels is a read on its own: out of the stream
    keys = [t["key"] for t in ts.data]
    assert not [k for k in keys if isinstance(k, tuple) and k[0] in names]
    assert len(names) > 3 and any("lloyd_block" in str(k) for k in keys)  # the passes read the files


def test_each_chunk_draws_its_own_stream_and_names_rows_of_the_pool():
    """Random scores differ between chunks of one length (a shared stream would pick
    rows at the same offsets in every chunk), and k-means||'s candidates are rows of
    the whole pool: with weight only in the last chunk, only its rows."""
    with dask.config.set(scheduler="synchronous"):
        scores = reductions.random_scores(np.random.default_rng(0), da.zeros(400, chunks=100, dtype=np.int8))
        parts = scores.compute().reshape(4, 100)
        assert all(not np.array_equal(parts[0], p) for p in parts[1:])
        w = np.zeros(400)
        w[300:] = 1.0
        blocks = reductions.map_chunks([da.from_array(w, chunks=100)], tasks.oversample_block, 7, 50.0, 100.0)
        rows = np.concatenate(reductions.gather_blocks(blocks, None))
    assert rows.size > 10 and rows.min() >= 300 and rows.max() < 400


@given(data=st.data())
@settings(max_examples=30, deadline=None)
def test_thresholds_by_bins_are_those_of_the_whole_merge(data):
    """The r-th smallest (score, row) of each cluster found round by round over bins of
    the open ranges (with room for as few as one row, so that many rounds run; ties
    in scores; uneven chunks) is the last pick of the exact merge of all rows."""
    from unittest import mock

    n = data.draw(st.integers(1, 300))
    k = data.draw(st.integers(1, 5))
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    ties = data.draw(st.booleans())
    values = st.integers(0, 3) if ties else st.floats(0, 1e3, allow_nan=False, width=32)
    scores = np.array(data.draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    sizes = np.bincount(labels, minlength=k)
    r = np.array([data.draw(st.integers(0, max(m - 1, 0))) for m in sizes])
    chunks = data.draw(st.integers(1, 80))
    want = selection.last_picks(selection.smallest(labels, scores, np.arange(n), r), k)
    room = 24 * data.draw(st.integers(1, 40))  # rows of (label, score, row) the last merge may hold
    with dask.config.set(scheduler="synchronous"), mock.patch.object(hkmeans._config, "DASK_CHUNK_BYTES", room):
        got = dask_backend.thresholds(
            da.from_array(labels, chunks=chunks), da.from_array(scores, chunks=chunks), k, r, sizes
        )
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_empty_chunks_zero_features_and_unknown_sizes_are_handled_or_one_line():
    dX = da.from_array(X[:400], chunks=((200, 0, 200), (X.shape[1],)))
    with dask.config.set(scheduler="synchronous"):
        m = KMeans(5, random_state=0).fit(dX)
        np.testing.assert_allclose(m.transform(dX).compute(), m.transform(X[:400]), rtol=1e-5)
        for est in (KMeans(5), HierarchicalKMeans(5)):
            with pytest.raises(ValueError, match=r"0 feature\(s\)"):
                est.fit(dX[:, :0])
        unknown = dX[dX[:, 0] > 0]
        with pytest.raises(ValueError, match="unknown chunk sizes"):
            hkmeans.dedup(unknown, 0.99)
        with pytest.raises(ValueError, match="non-empty 2-D array"):
            hkmeans.dedup(dX[:0], 0.99)


def test_other_rows_are_drawn_from_the_whole_pool():
    """The rows that top up too few k-means|| candidates are uniform over the pool's
    rows not excluded, not the smallest of the rows drawn (rows near the start)."""
    with dask.config.set(scheduler="synchronous"):
        data = dask_backend.DaskBackend(np.zeros((100_000, 2), np.float32), persist=False)
        exclude = np.array([5, 70_000])
        rows = data.other_rows(exclude, 1000, np.random.default_rng(0))
    assert rows.size == 1000 and np.unique(rows).size == 1000 and not np.isin(rows, exclude).any()
    assert 40_000 < np.median(rows) < 60_000 and rows.max() > 90_000
