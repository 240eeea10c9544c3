"""Edges of the parameter and input checks and of the scikit-learn API, each against an
independent expectation: scikit-learn's conventions and messages, or plain NumPy."""

import inspect
import re
import warnings

import numpy as np
import pytest
from sklearn.cluster import KMeans as SKKMeans

from hkmeans import HierarchicalKMeans, KMeans
from hkmeans.advise import ParameterWarning
from hkmeans.cli.config import ConfigError, read


def rows(n=40, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def refused(make, message, X=None, **fit):
    """``make().fit`` raises a ValueError whose whole text is ``message``."""
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        make().fit(rows() if X is None else X, **fit)


def test_an_init_array_with_more_rows_than_clusters_is_refused():
    X = rows()
    refused(
        lambda: KMeans(2, init=X[:3]),
        "The shape of the initial centers (3, 3) does not match the number of clusters 2.",
    )


def test_an_init_array_with_nan_or_infinity_is_refused():
    for bad in (np.nan, np.inf):
        init = np.array([[bad, 0.0, 0.0], [1.0, 1.0, 1.0]])
        refused(lambda init=init: KMeans(2, init=init), "init array contains NaN or infinity.")


def test_as_many_clusters_as_rows_fit_each_row_alone():
    """scikit-learn takes n_clusters == n_samples: every row its own centre."""
    X = rows(12)
    for model in (KMeans(12, random_state=0), HierarchicalKMeans(12, n_resamples=0, random_state=0)):
        with warnings.catch_warnings():  # the hierarchy's advice: fewer than 2 points per cluster
            warnings.simplefilter("ignore", ParameterWarning)
            model.fit(X)
        assert model.inertia_ == 0.0
        assert sorted(model.labels_.tolist()) == list(range(12))
        np.testing.assert_array_equal(model.cluster_centers_[model.labels_], X)


@pytest.mark.parametrize("name", ["n_clusters", "max_iter"])
def test_a_bool_is_not_an_integer_parameter(name):
    what = "a positive integer"
    refused(lambda: KMeans(**{"n_clusters": 2, name: True}), f"{name} must be {what}, got True.")


def test_a_bool_is_not_a_per_level_entry():
    refused(
        lambda: HierarchicalKMeans(4, n_resamples=True),
        "n_resamples entries must each be a non-negative integer, got True.",
    )
    refused(lambda: HierarchicalKMeans(4, max_iter=True), "max_iter must be a positive integer, got True.")


def test_n_init_auto_runs_random_seeding_ten_times_as_scikit_learn():
    assert KMeans().get_params()["n_init"] == "auto"
    X = rows(60, 2)
    auto = KMeans(6, init="random", random_state=0).fit(X)
    ten = KMeans(6, init="random", n_init=10, random_state=0).fit(X)
    once = KMeans(6, init="random", n_init=1, random_state=0).fit(X)
    assert auto.inertia_ == ten.inertia_
    np.testing.assert_array_equal(auto.cluster_centers_, ten.cluster_centers_)
    assert auto.inertia_ < once.inertia_  # the data is such that the 10 runs find better


def test_kmeans_defaults_are_scikit_learns():
    ours, theirs = inspect.signature(KMeans).parameters, inspect.signature(SKKMeans).parameters
    assert not set(theirs) - set(ours), f"scikit-learn's KMeans has parameters ours lacks: {set(theirs) - set(ours)}"
    for name, param in theirs.items():
        assert ours[name].default == param.default, name


def test_a_scalar_sample_weight_weighs_every_row_alike():
    """As scikit-learn's ``_check_sample_weight``: a number is the weight of each row."""
    X = rows()
    for make in (lambda: KMeans(3, random_state=0), lambda: HierarchicalKMeans(3, n_resamples=0, random_state=0)):
        plain, scalar = make().fit(X), make().fit(X, sample_weight=2.0)
        np.testing.assert_array_equal(scalar.labels_, plain.labels_)
        assert scalar.inertia_ == pytest.approx(2 * plain.inertia_, rel=1e-12)
        assert plain.score(X, sample_weight=3.0) == pytest.approx(3 * plain.score(X), rel=1e-12)


def test_score_checks_its_sample_weight():
    X = rows()
    model = KMeans(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"^sample_weight\.shape == \(3,\), expected \(40,\)!$"):
        model.score(X, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="^Negative values in data passed to sample_weight"):
        model.score(X, sample_weight=-np.ones(40))
    with pytest.raises(ValueError, match="^sample_weight contains NaN or infinity.$"):
        model.score(X, sample_weight=np.r_[np.nan, np.ones(39)])


def test_an_unknown_algorithm_is_refused():
    refused(lambda: KMeans(2, algorithm="full"), "algorithm must be one of ('lloyd', 'elkan'), got 'full'.")
    refused(
        lambda: KMeans(2, algorithm=np.array(["lloyd", "elkan"])),
        "algorithm must be one of ('lloyd', 'elkan'), got array(['lloyd', 'elkan'], dtype='<U5').",
    )


def test_an_init_beyond_the_data_dtype_is_named_so():
    X = rows().astype(np.float32)
    big = np.array([[1e39, 0, 0], [0, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from the cast either
        refused(
            lambda: KMeans(2, init=big, n_init=1), "init array has values too large for the data's dtype (float32).", X
        )
    refused(lambda: KMeans(2, init=big * np.nan, n_init=1), "init array contains NaN or infinity.", X)
    assert KMeans(2, init=big, n_init=1).fit(X.astype(np.float64)).labels_.shape == (len(X),)  # fits float64


def test_an_unknown_sampling_method_is_refused_before_any_draw():
    model = HierarchicalKMeans((4, 2), random_state=0).fit(rows())
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    for method in ("tree", np.array(["flat", "flat"])):
        with pytest.raises(ValueError, match=r"^method must be one of \('hierarchical', 'flat'\), got .+\.$"):
            model.sample(5, method=method, random_state=rng)
    assert rng.bit_generator.state == before


def test_the_overflow_limit_depends_on_the_number_of_features():
    """Squared distances of d features of magnitude v reach 4 d v**2: the largest value
    taken is sqrt(max / (4 d)), 9.22e17 in float32 with 100 features."""
    model = KMeans(2, random_state=0).fit(rows(10, 100).astype(np.float32))
    limit = (float(np.finfo(np.float32).max) / (4 * 100)) ** 0.5
    assert model.predict(np.full((2, 100), limit / 2, dtype=np.float32)).shape == (2,)
    with pytest.raises(
        ValueError, match=r"overflow float32 \(at most 9\.22e\+17 with 100 features\); scale the data\.$"
    ):
        model.predict(np.full((2, 100), 2 * limit, dtype=np.float32))


def test_cosine_hierarchy_inertia_is_measured_on_unit_rows():
    X = 5 * rows(80, 4)
    model = HierarchicalKMeans((6, 3), metric="cosine", n_resamples=1, random_state=0).fit(X)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    expected = np.sum((unit - model.cluster_centers_[model.labels_]) ** 2)
    assert model.inertia_ == pytest.approx(expected, rel=1e-9)
    assert model.inertia_ == pytest.approx(-model.score(X), rel=1e-12)


def test_an_unknown_backend_is_refused_in_the_tables_words():
    refused(lambda: HierarchicalKMeans(4, backend="gpu"), "backend must be one of 'auto', 'cpu', 'dask', got 'gpu'.")


def test_an_empty_list_of_levels_is_refused_in_a_config_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("n_clusters = []\n")
    with pytest.raises(ConfigError, match=r"n_clusters must be a positive integer or one per level, got \[\]\.$"):
        read(path)


@pytest.mark.parametrize("name", ["n_resamples", "sample_size", "n_splits"])
def test_per_level_parameters_take_numpy_integers(name):
    """As every integer parameter does (n_clusters, max_iter, ...): a NumPy integer is
    the same at every level as a Python int."""
    X = rows(60)
    value = {"n_resamples": 1, "sample_size": 2, "n_splits": 1}[name]
    ref = HierarchicalKMeans((6, 2), random_state=0, **{name: value}).fit(X)
    got = HierarchicalKMeans((6, 2), random_state=0, **{name: np.int64(value)}).fit(X)
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    np.testing.assert_array_equal(got.cluster_centers_, ref.cluster_centers_)


@pytest.mark.parametrize("name", ["n_clusters", "n_resamples"])
def test_a_zero_dimensional_array_is_refused_in_one_line_naming_the_parameter(name):
    """As :class:`KMeans` refuses ``n_clusters=np.array(3)``: a ValueError, not NumPy's
    TypeError about iterating over a 0-d array."""
    params = {"n_clusters": 4, name: np.array(1)}
    with pytest.raises(ValueError, match=rf"^{name} entries must each be a .* integer, got array\(1\)\.$"):
        HierarchicalKMeans(**params).fit(rows())


def test_one_resampling_step_is_enough_to_refuse_splitting_at_that_level():
    refused(
        lambda: HierarchicalKMeans(4, n_splits=2, n_resamples=1),
        "level 0 asks for both splitting (n_splits=2) and resampling (n_resamples=1); "
        "set n_resamples=0 or sample_size=1 at that level.",
    )


def test_an_init_array_is_one_run_whatever_n_init(capsys):
    """As scikit-learn: warned, and then one initialisation and one run, not n_init."""
    X = rows()
    with pytest.warns(RuntimeWarning, match=r"performing only one init instead of n_init=3"):
        KMeans(2, init=X[:2], n_init=3, verbose=1).fit(X)
    assert capsys.readouterr().out.count("Initialization complete") == 1


def test_assignments_refuse_fewer_ids_than_training_samples():
    model = HierarchicalKMeans(4, n_resamples=0, random_state=0).fit(rows())
    with pytest.raises(ValueError, match=r"^ids must hold one id per training sample \(40\), got 39\.$"):
        model.assignments(ids=np.arange(39))


@pytest.mark.parametrize(
    "make", [lambda **p: KMeans(4, **p), lambda **p: HierarchicalKMeans(4, **p)], ids=["flat", "tree"]
)
def test_both_estimators_refuse_an_unknown_backend_or_device_alike(make):
    refused(lambda: make(backend="gpu"), "backend must be one of 'auto', 'cpu', 'dask', got 'gpu'.")
    refused(lambda: make(device="tpu"), "device must be one of 'cpu', 'cuda', got 'tpu'.")


def test_complex_weights_are_refused_not_taken_by_their_real_part():
    with pytest.raises(ValueError, match="^sample_weight must be real numbers, got complex ones.$"):
        KMeans(2).fit(rows(), sample_weight=np.ones(40) + 1j)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: KMeans(4, verbose="no"), "verbose must be a bool or a non-negative integer, got 'no'"),
        (lambda: KMeans(4, verbose=-1), "verbose must be a bool or a non-negative integer, got -1"),
        (lambda: KMeans(4, copy_x="no"), "copy_x must be a bool, got 'no'"),
        (lambda: KMeans(4, client="nonsense"), "client must be None or a distributed.Client"),
        (lambda: HierarchicalKMeans(4, verbose="x"), "verbose must be a bool or a non-negative integer"),
        (lambda: HierarchicalKMeans(4, client=object()), "client must be None or a distributed.Client"),
    ],
)
def test_parameters_that_change_no_result_are_checked_too(make, message):
    # verbose="no" printed the log, and the others were taken without a word
    X = np.random.default_rng(0).normal(size=(100, 3))
    with pytest.raises(ValueError, match=re.escape(message)):
        make().fit(X)
    for ok in (dict(verbose=2), dict(verbose=np.True_), dict(copy_x=np.False_)):
        KMeans(4, random_state=0, **ok).fit(X)
