"""scikit-learn compatibility of both estimators."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import hkmeans
from hkmeans import HierarchicalKMeans, KMeans


@parametrize_with_checks([HierarchicalKMeans(), KMeans()])
def test_scikit_learn_compatible(estimator, check):
    check(estimator)


def data(seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6, size=(4, 5))
    return centres[rng.integers(0, 4, 400)] + rng.normal(size=(400, 5))


ESTIMATORS = [
    KMeans(4, random_state=0),
    HierarchicalKMeans((12, 4), n_resamples=2, random_state=0),
]


@pytest.mark.parametrize("est", ESTIMATORS, ids=type)
def test_in_a_pipeline(est):
    X = data()
    pipe = make_pipeline(StandardScaler(), est).fit(X)
    alone = clone(est).fit(StandardScaler().fit_transform(X))
    np.testing.assert_array_equal(pipe.predict(X), alone.labels_)
    assert pipe.transform(X).shape == (400, 4)


@pytest.mark.parametrize("est", ESTIMATORS, ids=type)
def test_clone_and_pickle(est):
    X = data(1)
    fitted = clone(est).fit(X)
    assert clone(fitted).get_params() == est.get_params()
    assert not hasattr(clone(fitted), "labels_")
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.predict(X), fitted.labels_)
    np.testing.assert_array_equal(back.cluster_centers_, fitted.cluster_centers_)


@pytest.mark.parametrize("est", ESTIMATORS, ids=type)
@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[1.0, np.nan]] * 20), "NaN"),
        (np.array([[1.0, np.inf]] * 20), "infinity"),
        (np.zeros((0, 3)), "0 sample"),
        (np.zeros(20), "2D array"),
        (np.zeros((20, 2, 2)), "dim"),
    ],
)
def test_bad_input_is_refused(est, X, match):
    with pytest.raises(ValueError, match=match):
        clone(est).fit(X)


#: An array where a number or a name belongs: its repr runs over many lines.
WRONG = np.arange(2000.0).reshape(100, 20)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda X: KMeans(n_clusters=WRONG).fit(X), "n_clusters"),
        (lambda X: HierarchicalKMeans(n_clusters=(4, WRONG)).fit(X), "n_clusters"),
        (lambda X: KMeans(4, n_init=WRONG).fit(X), "n_init"),
        (lambda X: KMeans(4, metric=WRONG).fit(X), "metric"),
        (lambda X: hkmeans.dedup(X, threshold=WRONG), "threshold"),
        (lambda X: hkmeans.dedup(X, 0.9, keep=WRONG), "keep"),
        (lambda X: hkmeans.advise(X, 10), "n_samples"),
        (lambda X: hkmeans.kmeans_plusplus(X, 4, n_local_trials=WRONG), "n_local_trials"),
        (lambda X: hkmeans.hierarchical_sampling(clone(ESTIMATORS[1]).fit(X).tree_, WRONG), "target_size"),
        (lambda X: hkmeans.hierarchical_sampling(clone(ESTIMATORS[1]).fit(X).tree_, 5, strategy=WRONG), "strategy"),
    ],
    ids=["n_clusters", "per level", "n_init", "metric", "threshold", "keep", "advise", "trials", "target", "strategy"],
)
def test_a_wrong_value_is_named_in_one_short_line(call, name):
    with pytest.raises(ValueError) as e:
        call(data())
    message = str(e.value)
    assert message.startswith(name) and "an array of shape (" in message, message
    assert "\n" not in message and len(message) < 300, message


@pytest.mark.parametrize("est", ESTIMATORS, ids=type)
def test_other_numeric_dtypes_are_cast_once(est):
    X = np.rint(data(2) * 10).astype(np.int32)
    fitted = clone(est).fit(X)
    assert fitted.cluster_centers_.dtype == np.float64
    np.testing.assert_array_equal(fitted.predict(X), fitted.labels_)


def test_hierarchical_fewer_distinct_points_than_clusters_warns():
    from sklearn.exceptions import ConvergenceWarning

    X = np.repeat(np.eye(3), 10, axis=0)
    with pytest.warns(ConvergenceWarning):
        HierarchicalKMeans(5, random_state=0).fit(X)


def test_sample_follows_the_estimators_random_state():
    X = np.random.default_rng(0).normal(size=(400, 3))
    a = HierarchicalKMeans((20, 5), n_resamples=1, random_state=7).fit(X)
    b = HierarchicalKMeans((20, 5), n_resamples=1, random_state=7).fit(X)
    np.testing.assert_array_equal(a.sample(50), b.sample(50))
    np.testing.assert_array_equal(a.sample(50), a.sample(50))  # every call, not only the first
    assert not np.array_equal(a.sample(50), a.sample(50, random_state=1))
    rng = np.random.default_rng(3)
    c = HierarchicalKMeans((20, 5), n_resamples=1, random_state=rng).fit(X)
    assert not np.array_equal(c.sample(50), c.sample(50))  # a Generator is advanced


def test_defaults_come_from_the_one_table_of_parameters():
    import inspect

    from hkmeans import hierarchical_kmeans
    from hkmeans._params import FIT_PARAMS
    from hkmeans.cli.config import FIT_KEYS

    estimator = inspect.signature(HierarchicalKMeans).parameters
    engine = inspect.signature(hierarchical_kmeans).parameters
    for name, param in FIT_PARAMS.items():
        assert estimator[name].default == param.default, name
        if name != "n_clusters":  # required by the engine
            assert engine[name].default == param.default, name
        if name in FIT_KEYS and name != "n_clusters":  # required on the command line
            assert FIT_KEYS[name].default == param.default, name
    assert set(estimator) == set(FIT_PARAMS) | {"random_state", "verbose", "client"}


@pytest.mark.parametrize(
    "est, bad",
    [
        (KMeans(10, random_state=0), dict(max_iter=0)),
        (HierarchicalKMeans((10, 3), random_state=0), dict(n_resamples=-1)),
    ],
)
def test_a_failed_fit_leaves_the_fitted_model_whole(est, bad):
    X = np.random.default_rng(0).normal(size=(300, 8))
    est.fit(X)
    labels, centres = est.predict(X), est.cluster_centers_.copy()
    with pytest.raises(ValueError):  # found after the data of 3 features was checked
        est.set_params(**bad).fit(X[:, :3])
    assert est.n_features_in_ == 8
    np.testing.assert_array_equal(est.predict(X), labels)
    np.testing.assert_array_equal(est.cluster_centers_, centres)


def test_an_empty_cluster_is_reseeded_whatever_the_weights():
    X = np.random.default_rng(0).normal(size=(200, 4))
    init = np.r_[X[:2], [[100.0] * 4]]  # no row nearest to the third: it takes the farthest
    light = KMeans(3, init=init).fit(X)
    for weight in (5e7, 1e19):  # whole units of weight are not materialised, one row each at most
        heavy = KMeans(3, init=init).fit(X, sample_weight=np.full(200, weight))
        np.testing.assert_array_equal(heavy.labels_, light.labels_)


def test_cosine_fits_rows_of_any_magnitude_alike():
    """Cosine ignores scale: rows whose float64 squares overflow or underflow are
    normalised as the others, and fit the same."""
    from hkmeans.backends.in_memory import normalize_rows

    X = np.random.default_rng(0).normal(size=(200, 4))
    for scale in (1e-300, 1e-170, 1e155, 1e300):
        np.testing.assert_allclose(normalize_rows(X * scale), normalize_rows(X), rtol=1e-12)
    with_zero = X.copy()
    with_zero[7] = 0  # zero rows stay zero
    np.testing.assert_array_equal(normalize_rows(with_zero)[7], 0)
    assert np.isfinite(KMeans(4, metric="cosine", random_state=0).fit(with_zero).inertia_)
    reference = KMeans(4, metric="cosine", random_state=0).fit(X)
    for scale in (1e-170, 1e155):
        m = KMeans(4, metric="cosine", random_state=0).fit(X * scale)
        np.testing.assert_array_equal(m.labels_, reference.labels_)
        np.testing.assert_array_equal(m.predict(X * scale), reference.predict(X))


def test_float64_rows_beyond_float32s_range_fit_as_scaled_ones():
    """Rows of 1e39 fit as the same rows at scale 1 (a power of 2 scales exactly): the
    Lloyd bounds, kept in float32, stay finite and loosen instead of stopping the run."""
    X = np.random.default_rng(10).normal(size=(300, 4))
    big = X * 2.0**130
    for make in (lambda: KMeans(8, random_state=0), lambda: HierarchicalKMeans((8, 2), random_state=0)):
        ref, m = make().fit(X), make().fit(big)
        np.testing.assert_array_equal(m.labels_, ref.labels_)
        np.testing.assert_array_equal(m.predict(big), m.labels_)
    assert KMeans(8, random_state=0).fit(big).n_iter_ == KMeans(8, random_state=0).fit(X).n_iter_


def test_values_whose_distances_overflow_are_refused_before_any_work():
    X = np.random.default_rng(0).normal(size=(200, 4))
    for make in (lambda: HierarchicalKMeans((10, 3)), lambda: KMeans(4)):
        with pytest.raises(
            ValueError, match=r"^X has values up to 3.9e\+200 .* overflow float64 .*; scale the data\.$"
        ):
            make().fit(X * 1e200)
    m = KMeans(4, random_state=0).fit(X.astype(np.float32))
    big = np.full((2, 4), 1e39)
    for method in (m.predict, m.transform, m.score):
        with pytest.raises(ValueError, match=r"beyond float32's range"):
            method(big)
    with pytest.raises(ValueError, match=r"overflow float32"):
        m.predict(np.full((2, 4), 1e30))
    assert m.predict(np.full((2, 4), 1e17)).shape == (2,)  # large, but within the limit for 4 features


def test_transform_is_distances_to_the_top_centres_and_predict_follows_the_tree():
    """Documented: ``transform`` measures to the top-level centres; ``predict``
    routes through level 0, whose nearest centroid ``argmin`` of its distances is."""
    from sklearn.metrics import pairwise_distances

    X = np.random.default_rng(0).normal(size=(600, 5))
    model = HierarchicalKMeans((30, 5), n_resamples=2, random_state=0).fit(X)
    np.testing.assert_allclose(model.transform(X), pairwise_distances(X, model.cluster_centers_), rtol=1e-10)
    level0 = pairwise_distances(X, model.levels_[0].centroids)
    np.testing.assert_array_equal(level0.argmin(1), model.predict(X, level=0))


def test_sample_weight_of_an_infinite_sum_is_refused():
    X = np.random.default_rng(0).normal(size=(300, 3))
    for est in (KMeans(3, random_state=0), HierarchicalKMeans((6, 2), random_state=0)):
        with pytest.raises(ValueError, match="sample_weight sums to more than float64 holds"):
            est.fit(X, sample_weight=np.full(300, 1e308))


def test_sparse_tag_follows_the_sampling_options():
    assert KMeans(3).__sklearn_tags__().input_tags.sparse
    assert not KMeans(3, max_points_per_centroid=2).__sklearn_tags__().input_tags.sparse
    assert not KMeans(3, init_points_per_centroid=2).__sklearn_tags__().input_tags.sparse


@pytest.mark.parametrize("est", ESTIMATORS, ids=type)
def test_score_weights_are_repeated_rows(est):
    X = data()
    w = np.random.default_rng(1).integers(1, 4, len(X))
    m = clone(est).fit(X)
    assert m.score(X, sample_weight=w) == pytest.approx(m.score(np.repeat(X, w, axis=0)), rel=1e-12)
    assert m.score(X, sample_weight=w) < m.score(X)  # every weight at least 1, most above


@pytest.mark.parametrize("est", ESTIMATORS, ids=type)
def test_a_refit_leaves_nothing_of_the_first_fit(est):
    X = data()
    refit = clone(est).fit(X).fit(3 * X)
    fresh = clone(est).fit(3 * X)
    assert refit.inertia_ == fresh.inertia_ and refit.n_iter_ == fresh.n_iter_
    np.testing.assert_array_equal(refit.labels_, fresh.labels_)
    np.testing.assert_array_equal(refit.cluster_centers_, fresh.cluster_centers_)


@pytest.mark.parametrize("est", ESTIMATORS, ids=type)
def test_feature_names_out_name_each_distance_column(est):
    X = data()
    m = clone(est).fit(X)
    k = m.transform(X).shape[1]
    prefix = type(est).__name__.lower()
    assert m.get_feature_names_out().tolist() == [f"{prefix}{i}" for i in range(k)]


@pytest.mark.parametrize("est", ESTIMATORS, ids=type)
def test_set_output_pandas_names_the_columns(est):
    pd = pytest.importorskip("pandas")
    X = data()
    frame = clone(est).set_output(transform="pandas").fit(X).transform(pd.DataFrame(X))
    prefix = type(est).__name__.lower()
    assert list(frame.columns) == [f"{prefix}{i}" for i in range(frame.shape[1])]
