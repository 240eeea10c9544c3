"""``hkmeans.dedup`` on Dask: the rule over all pairs, and the in-process result bit
for bit, on one and two worker processes and whatever the chunking.

Blocks of the border search are cut to 8 rows (``_config.CHUNK_ROWS``, read on the
client and passed to the tasks) so that tiny inputs span several chunks of the
search and several groups of clusters.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

distributed = pytest.importorskip("distributed")
import dask  # noqa: E402
import dask.array as da  # noqa: E402

import hkmeans  # noqa: E402
from hkmeans import HierarchicalKMeans, _config  # noqa: E402
from hkmeans.backends.dask import dedup as dask_dedup  # noqa: E402
from hkmeans.dedup import KEEP  # noqa: E402

from .test_dask import cluster  # noqa: E402
from .test_dedup import check_rule, pools  # noqa: E402

FIELDS = ("kept", "duplicate_of", "similarity", "order", "labels", "n_compared")


@pytest.fixture(scope="module", autouse=True)
def small_blocks():
    before = _config.CHUNK_ROWS
    _config.CHUNK_ROWS = 8
    yield
    _config.CHUNK_ROWS = before


@pytest.fixture(scope="module", params=[1, 2], ids=["1 worker", "2 workers"])
def client(request):
    with cluster(request.param) as c, distributed.Client(c, set_as_default=False) as cl:
        yield cl


def assert_same(a, b):
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def chains(seed, n=240, d=6):
    """Rows in chains of small steps (decisions that wait on other clusters' rows),
    copies and noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 0] += 3
    for _ in range(20):
        a = rng.integers(n)
        for j in rng.choice(n, 5, replace=False):
            X[j] = X[a] + 0.04 * (j - a) * np.eye(d, dtype=np.float32)[1]
    X[rng.integers(0, n, 20)] = X[rng.integers(0, n, 20)]
    return X


@st.composite
def cases(draw):
    """A pool of :func:`tests.test_dedup.pools`, a rank, clusters and a chunking."""
    metric = draw(st.sampled_from(["cosine", "euclidean"]))
    X, t = draw(pools(metric))
    keep = draw(st.sampled_from(KEEP))
    k = draw(st.integers(1, len(X)))  # many clusters: pairs straddle their borders
    rows = draw(st.sampled_from([3, 7, len(X)]))
    return X, t, metric, keep, k, rows


@pytest.mark.slow
@settings(max_examples=10)
@given(case=cases())
def test_equals_the_rule_over_all_pairs_on_dask(client, case):
    X, t, metric, keep, k, rows = case
    kw = dict(metric=metric, keep=keep, n_clusters=k, random_state=0)
    res = hkmeans.dedup(da.from_array(X, chunks=(rows, -1)), t, client=client, **kw)
    check_rule(X, t, metric, res)
    assert_same(res, hkmeans.dedup(X, t, **kw))


@pytest.mark.parametrize("metric, t", [("cosine", 0.995), ("euclidean", 0.15)])
def test_same_result_whatever_the_workers_chunks_and_groups(client, monkeypatch, metric, t):
    X = chains(0)
    kw = dict(metric=metric, keep="hard", random_state=1, n_clusters=20)
    ref = hkmeans.dedup(X, t, **kw)
    assert 0 < len(ref.kept) < len(X)
    for rows in (7, len(X)):
        assert_same(hkmeans.dedup(da.from_array(X, chunks=(rows, -1)), t, client=client, **kw), ref)
    monkeypatch.setattr(dask_dedup, "GROUPS_PER_WORKER", 50)  # a group per cluster
    assert_same(hkmeans.dedup(da.from_array(X, chunks=(7, -1)), t, client=client, **kw), ref)
    with dask.config.set(scheduler="sync"):  # no cluster: the tasks in this process
        assert_same(hkmeans.dedup(X, t, backend="dask", **kw), ref)


@pytest.mark.parametrize(
    "scale, t, metric", [(1e30, 1e28, "euclidean"), (1e-22, 0.0, "euclidean"), (1e37, 0.999, "cosine")]
)
def test_float32_rows_searched_in_float64_as_in_process(client, scale, t, metric):
    # products of such float32 rows leave float32's range: float64 on Dask too
    X = (chains(4, n=120) * scale).astype(np.float32)
    X[60:80] = X[:20]
    kw = dict(metric=metric, keep="first", random_state=0, n_clusters=6)
    ref = hkmeans.dedup(X, t, **kw)
    assert_same(hkmeans.dedup(da.from_array(X, chunks=(25, -1)), t, client=client, **kw), ref)
    check_rule(X, t, metric, ref)


def test_rounds_pass_decisions_between_groups(client, monkeypatch):
    # rows on a line 0.05 apart, threshold 0.1, in line order: a cluster's first row
    # waits on the last of the cluster before it, a round per cluster
    X = np.column_stack([np.arange(300) * 0.05, np.zeros(300)])
    rounds = []
    real = dask_dedup.compute

    def counted(*collections, client=None):
        rounds.append(len(collections))
        return real(*collections, client=client)

    monkeypatch.setattr(dask_dedup, "compute", counted)
    monkeypatch.setattr(dask_dedup, "GROUPS_PER_WORKER", 50)
    kw = dict(metric="euclidean", keep="first", random_state=2, n_clusters=12)
    res = hkmeans.dedup(da.from_array(X, chunks=(50, -1)), 0.1, client=client, **kw)
    assert_same(res, hkmeans.dedup(X, 0.1, **kw))
    check_rule(X, 0.1, "euclidean", res)
    assert len(rounds) - 2 > 5  # rounds (after the norms' and the labels' passes)


def test_model_centroids_and_bad_rows_on_dask(client):
    X = chains(3, n=200)
    model = HierarchicalKMeans((8, 2), n_resamples=1, random_state=0).fit(X)
    ref = hkmeans.dedup(X, 0.99, model=model)
    assert_same(hkmeans.dedup(da.from_array(X, chunks=(30, -1)), 0.99, model=model, client=client), ref)
    with pytest.raises(ValueError, match="other data"):
        hkmeans.dedup(da.from_array(X[::-1].copy(), chunks=(30, -1)), 0.99, model=model, client=client)
    bad = X.copy()
    bad[77, 2] = np.nan
    with pytest.raises(ValueError, match="row 77") as e:
        hkmeans.dedup(da.from_array(bad, chunks=(30, -1)), 0.99, client=client)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(backend="cpu"), "in-memory"),
        (dict(backend="spark"), "backend must be one of"),
        (dict(device="tpu"), "device must be one of"),
        (dict(client="tcp://127.0.0.1:8786"), "distributed.Client"),
    ],
)
def test_bad_backend_parameters_one_line(kwargs, match):
    X = da.from_array(np.random.default_rng(0).normal(size=(20, 3)), chunks=(5, -1))
    with pytest.raises(ValueError, match=match) as e:
        hkmeans.dedup(X, 0.9, **kwargs)
    assert "\n" not in str(e.value)
