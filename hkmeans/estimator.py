"""scikit-learn estimators: validate input, call the engine, store fitted attributes."""

from __future__ import annotations

import contextlib
import copy
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._params import FIT_PARAMS
from ._rng import as_generator
from ._threads import single_threaded_blas
from ._validation import (
    check,
    check_choice,
    check_hierarchy,
    check_kmeans_params,
    check_options,
    check_sample_weight,
)
from .backends import DetachedWhenPickled, arrays_of, check_backend, dask_module, resolve
from .hierarchy import fit_levels, tree_from_levels
from .kmeans import kmeans
from .sampling import flat_sampling, hierarchical_sampling
from .seeding import init_centers
from .tables import assignments, cluster_table

_DTYPES = [np.float64, np.float32]


class _CentroidClusterer(
    DetachedWhenPickled, ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator
):
    """What both estimators share: prediction input, ``transform`` and ``score``."""

    #: sparse matrices taken by fit and prediction (False: dense only)
    _accept_sparse: bool | str = False

    def __getstate__(self):
        """As scikit-learn pickles an estimator, without a Dask fit's per-row state
        (:class:`~hkmeans.backends.DetachedWhenPickled`) and without ``client``, a
        connection that cannot travel: the copy uses the default client."""
        return {**super().__getstate__(), "client": None}

    def __deepcopy__(self, memo):
        if self.client is not None:
            memo[id(self.client)] = self.client  # a connection is shared, not copied
        return super().__deepcopy__(memo)

    def __sklearn_clone__(self):
        """scikit-learn's ``clone`` (grid searches, pipelines), the ``client`` shared
        as a deep copy shares it: its parameters are otherwise deep-copied one by one,
        and a connection cannot be."""
        if self.client is None:
            return super().__sklearn_clone__()
        twin = copy.copy(self)
        twin.client = None
        new = super(_CentroidClusterer, twin).__sklearn_clone__()
        new.client = self.client
        return new

    def _validate_fit_data(self, X):
        """``X`` checked; a dask array is checked by shape and dtype only (its rows are
        checked for NaN, infinity and overflowing values chunk by chunk in the first
        pass)."""
        check("metric", self.metric)  # before the rows, whose range check depends on it
        check_backend(X, self.backend)
        arrays = arrays_of(X)
        X = arrays.validated(self, X, reset=True, accept_sparse=self._accept_sparse)
        arrays.check_range(X, X.dtype, self.metric)
        return X

    def _validate_test_data(self, X):
        check_is_fitted(self)
        arrays = arrays_of(X)
        X = arrays.validated(self, X, reset=False, accept_sparse=self._accept_sparse)
        X = arrays.in_dtype(X, self.cluster_centers_.dtype, self.metric)
        return arrays.normalized(X) if self.metric == "cosine" else X

    def _on_metric(self, X):
        """Rows as the metric compares them: unit rows for "cosine"."""
        return arrays_of(X).normalized(X) if self.metric == "cosine" else X

    def _data(self, X):
        """The backend over validated rows ``X`` for prediction: lazy for a dask array."""
        return resolve(X, self.device, client=self.client, persist=False)

    def _scheduler(self):
        """Context in which Dask work runs on ``client`` (if given)."""
        return dask_module().using(self.client) if self.client is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def _fitting(self):
        """Context of a fit: Dask work on ``client`` (if given), and a fit that fails
        (bad parameters found after the data set ``n_features_in_``, an error late in
        the work) leaves the estimator as it was, a fitted model still whole."""
        check_options(self.verbose, getattr(self, "copy_x", True), self.client)
        before = dict(self.__dict__)
        try:
            with self._scheduler():
                yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def _inertia(self, X, labels, sample_weight=None):
        """(Weighted) sum of squared distances of the rows of ``X`` to their centres
        ``labels``."""
        return arrays_of(labels).inertia(X, self.cluster_centers_, labels, sample_weight, self.client)

    def predict(self, X):
        """Index of the closest cluster centre (top level) for each sample.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            For a dask array, a lazy dask array.
        """
        with self._scheduler():
            return self._predict(self._validate_test_data(X))

    def transform(self, X):
        """Euclidean distance of each sample to each (top-level) cluster centre.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_clusters)
            For a dask array, a lazy dask array.

        Notes
        -----
        In a :class:`HierarchicalKMeans` of several levels the nearest of these centres
        is not always the cluster :meth:`predict` gives, as it is for
        :class:`sklearn.cluster.KMeans`: :meth:`predict` follows the tree from the
        nearest level-0 centroid (and :meth:`score` measures to that cluster's centre).
        The distances to the centroids of level ``t`` are
        ``sklearn.metrics.pairwise_distances(X, model.levels_[t].centroids)``; at level
        0 their nearest is ``predict(X, level=0)``, unless level 0 is split
        (``n_splits > 1``): a point then goes to the nearest sub-centroid of its
        nearest top centroid, not always its nearest sub-centroid.
        """
        X = self._validate_test_data(X)
        return arrays_of(X).distances(X, self.cluster_centers_, self.client)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) sum of squared distances of samples to the centre
        of the cluster :meth:`predict` gives them (higher is better).

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
        y : None
            Ignored; present for scikit-learn's API.
        sample_weight : array-like of shape (n_samples,) or None
            Weights of the squared distances (not for a dask array).

        Returns
        -------
        float
        """
        with self._scheduler():
            X = self._validate_test_data(X)
            sample_weight = check_sample_weight(sample_weight, X.shape[0])
            return -self._inertia(X, self._predict(X), sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class KMeans(_CentroidClusterer):
    """K-means clustering on Numba kernels, a drop-in for :class:`sklearn.cluster.KMeans`.

    Takes scikit-learn's parameters and ``fit(X, y, sample_weight)``; see
    ``docs/index.md`` for what of scikit-learn's KMeans is supported.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "k-means||", "random"}, callable or array of shape (n_clusters, n_features)
        "k-means++" is scikit-learn's greedy variant (``2 + int(ln k)`` trials per centre),
        one pass over the data per centre; "k-means||" (Bahmani et al., 2012) samples
        candidates in 3 rounds and reduces them by weighted k-means++, for large
        ``n_clusters``; "random" picks distinct rows (in proportion to their weights).
        A callable ``init(X, n_clusters, random_state)`` returns the centres.
    n_init : "auto" or int, default="auto"
        Runs with different seeds, the lowest inertia kept; "auto" is 10 for "random"
        or a callable and 1 otherwise.
    max_iter : int, default=300
    tol : float, default=1e-4
        Stop when the squared shift of all centres falls to ``tol`` times the mean
        feature variance, or when no label changes.
    verbose : int, default=0
        Print scikit-learn's lines: initialisation, inertia per iteration, convergence.
    random_state : int, Generator, RandomState or None
    copy_x : bool, default=True
        Accepted for scikit-learn's signature: ``X`` is never modified, whatever its value.
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        Both run the same Lloyd iterations with per-group distance bounds (Yinyang
        k-means), which skip most distance computations as Elkan's bounds do; the
        result does not depend on the choice.
    metric : {"euclidean", "cosine"}, default="euclidean"
        "cosine" runs spherical k-means: rows and centres are L2-normalised.
    backend : {"auto", "cpu", "dask"}, default="auto"
        See :class:`HierarchicalKMeans`.
    client : distributed.Client or None, default=None
        See :class:`HierarchicalKMeans`.
    device : {"cpu", "cuda"}, default="cpu"
        Where the fit's kernels run; "cuda" needs numba-cuda and an NVIDIA GPU.
    max_points_per_centroid, init_points_per_centroid : int or None, default=None
        See :class:`HierarchicalKMeans`; dense input only.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray or dask array of shape (n_samples,)
    inertia_ : float
        Sum of squared distances of samples to their closest centre, weighted by
        ``sample_weight``.
    n_iter_ : int
    n_features_in_ : int

    Notes
    -----
    An empty cluster (of weight 0) is re-seeded with the point farthest from its
    centre, which leaves its old cluster, as scikit-learn does. With ``sample_weight``
    it is done as on the rows repeated: a row of weight w counts as w rows, so when
    several clusters are empty at once one row may seed several of them (scikit-learn's
    weighted fit takes distinct rows). Sparse CSR input is
    densified one block of rows at a time inside each pass, never as a whole.
    """

    _accept_sparse = "csr"

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        verbose=0,
        random_state=None,
        copy_x=True,
        algorithm="lloyd",
        metric="euclidean",
        backend="auto",
        client=None,
        device="cpu",
        max_points_per_centroid=None,
        init_points_per_centroid=None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.metric = metric
        self.backend = backend
        self.client = client
        self.device = device
        self.max_points_per_centroid = max_points_per_centroid
        self.init_points_per_centroid = init_points_per_centroid

    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering of ``X``.

        Parameters
        ----------
        X : array-like, sparse CSR matrix or dask array of shape (n_samples, n_features)
        y : None
            Ignored; present for scikit-learn's API.
        sample_weight : array-like of shape (n_samples,) or None
            Non-negative weights: the seeding draws, the centroid means and the inertia
            are weighted (with the default draws, an integer weight counts as that
            many copies of its row: see the user guide).
            Not on the dask backend.

        Returns
        -------
        self : KMeans
        """
        with self._fitting():
            return self._fit(X, sample_weight)

    def _fit(self, X, sample_weight):
        X = self._validate_fit_data(X)
        init, n_init = check_kmeans_params(
            X, self.n_clusters, self.init, self.n_init, self.max_iter, self.tol, self.metric
        )
        check("device", self.device)
        per_centroid = {}
        for name in ("max_points_per_centroid", "init_points_per_centroid"):
            per_centroid[name] = check(name, getattr(self, name))
            if per_centroid[name] is not None and sp.issparse(X):
                raise ValueError(f"{name} needs dense input; got a sparse matrix.")
        check_choice("algorithm", self.algorithm, ("lloyd", "elkan"))
        if self.algorithm == "elkan" and self.n_clusters == 1:
            warnings.warn(
                "algorithm='elkan' doesn't make sense for a single cluster. Using 'lloyd' instead.",
                RuntimeWarning,
                stacklevel=3,
            )
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        data = resolve(X, self.device, client=self.client, backend=self.backend).weighted(sample_weight)
        self._n_init = n_init
        res = kmeans(
            data,
            int(self.n_clusters),
            init=init,
            n_init=n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            metric=self.metric,
            random_state=self.random_state,
            log=print if self.verbose else None,
            device=self.device,
            **per_centroid,
        )
        self.cluster_centers_ = res.centers
        self.labels_ = res.labels
        self.inertia_ = res.inertia
        self.n_iter_ = res.n_iter
        self._n_features_out = self.cluster_centers_.shape[0]
        return self

    def _predict(self, X):
        return self._data(X).assign(self.cluster_centers_)[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # a training sample or a seeding sample is drawn from dense rows only
        tags.input_tags.sparse = self.max_points_per_centroid is None and self.init_points_per_centroid is None
        return tags

    def _init_centroids(self, X, x_squared_norms, init, random_state, sample_weight, init_size=None, n_centroids=None):
        """Initial centres as scikit-learn's private method of that name returns them
        (``x_squared_norms`` and ``init_size`` are not used)."""
        k = self.n_clusters if n_centroids is None else n_centroids
        data = resolve(X).weighted(check_sample_weight(sample_weight, X.shape[0]))
        with single_threaded_blas():
            return init_centers(data, k, init, as_generator(random_state))[0]


class HierarchicalKMeans(_CentroidClusterer):
    """Hierarchical k-means with resampling-clustering, and balanced sampling of a
    curated subset (Vo et al., 2024).

    Level 0 clusters the data into ``n_clusters[0]`` clusters, level ``t`` clusters the
    centroids of level ``t - 1`` into ``n_clusters[t]``. At each level, after a first
    k-means, ``n_resamples`` times: ``sample_size`` points per cluster are taken, a
    fresh k-means is run on them and the level's whole input is reassigned.

    Parameters
    ----------
    n_clusters : int or sequence of int, default=8
        Clusters per level, finest first; an int is one level. The default matches
        scikit-learn's KMeans so the estimator works on small data out of the box; for
        curation use several levels, e.g. ``(1000, 300)``.
    n_resamples : int or sequence of int, default=10
        Resampling steps per level.
    sample_size : int, sequence of int or None, default=None
        Points taken per cluster in a resampling step; None is about half the level's
        average cluster size (the paper's rule of thumb); ``<= 1`` skips resampling.
    resample_strategy : {"closest", "random"}, default="closest"
        Take the points closest to the centroid, or random ones.
    n_splits : int or sequence of int, default=1
        For very large ``n_clusters``: a level runs a k-means with
        ``n_clusters / n_splits`` clusters and splits each by its own k-means into
        ``n_splits`` (empty sub-clusters dropped), side by side on the threads when
        the clusters are large enough; each point goes to the nearest sub-centroid
        of its nearest top centroid, and so does :meth:`predict`. Not combinable with
        resampling at the same level.
    init : {"k-means++", "k-means||", "random"}, default="k-means++"
    n_init : int or "auto", default=1
        Runs per k-means (best inertia kept); "auto" as in :class:`KMeans`.
    max_iter : int, default=50
        Lloyd iterations per k-means (the paper's setting).
    tol : float, default=0.0
        As in :class:`KMeans`; 0 stops only when labels stop changing or at ``max_iter``.
    metric : {"euclidean", "cosine"}, default="euclidean"
    max_points_per_centroid : int or None, default=None
        Each k-means with more rows than ``n_clusters * max_points_per_centroid``
        fits a random sample of that many rows, then assigns every row to its
        nearest centroid once (faiss's name and rule; it uses 256). None fits every
        row, as the paper does. See ``docs/performance.md`` for its effect. With
        ``sample_weight``, rows of weight 0 are never sampled (as absent rows).
    init_points_per_centroid : int or None, default=None
        Each k-means seeds ("k-means++" or "k-means||") from a random sample of
        ``n_clusters * init_points_per_centroid`` rows when it has more: with 40
        rows per centre the seeding takes about a seventh of the time, its
        potential within the spread of its own draws (``docs/performance.md``).
        None seeds from every row.
    random_state : int, Generator, RandomState or None
    verbose : bool, default=False
        Progress bars (levels, resampling steps, Lloyd iterations) and one line per
        level on stderr.
    device : {"cpu", "cuda"}, default="cpu"
        Where the kernels run; "cuda" needs numba-cuda and an NVIDIA GPU.
    backend : {"auto", "cpu", "dask"}, default="auto"
        How level 0 runs: in this process, or over the chunks of a dask array on a
        Dask cluster (an in-memory array is then wrapped in chunks); "auto" is
        "dask" for a dask array. On Dask, "k-means++" seeds by k-means|| (no pass per
        centre), or greedily in memory from the sample ``init_points_per_centroid``
        draws; see ``docs/scaling.md`` for how results compare.
    client : distributed.Client or None, default=None
        The cluster for the dask backend; None takes a local scheduler if one is
        configured, else the active Client, else starts a ``LocalCluster`` of worker
        processes sized to the machine.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters[-1], n_features)
        Top-level centroids.
    labels_ : ndarray or dask array of shape (n_samples,)
        Top-level cluster of each sample, through the tree (a dask array, not
        computed, for a fit on the dask backend).
    levels_ : list of Level
        Per level: ``centroids``, ``labels`` and ``sqdist`` of that level's input.
    tree_ : ClusterTree
    inertia_ : float
        Sum of squared distances of samples to their top-level centroid.
    n_iter_ : int
        Lloyd iterations of all k-means runs, all levels together.
    n_features_in_ : int
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        n_resamples=10,
        sample_size=None,
        resample_strategy="closest",
        n_splits=1,
        init="k-means++",
        n_init=1,
        max_iter=50,
        tol=0.0,
        metric="euclidean",
        max_points_per_centroid=None,
        init_points_per_centroid=None,
        random_state=None,
        verbose=False,
        device="cpu",
        backend="auto",
        client=None,
    ):
        self.n_clusters = n_clusters
        self.n_resamples = n_resamples
        self.sample_size = sample_size
        self.resample_strategy = resample_strategy
        self.n_splits = n_splits
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.metric = metric
        self.max_points_per_centroid = max_points_per_centroid
        self.init_points_per_centroid = init_points_per_centroid
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.backend = backend
        self.client = client

    def fit(self, X, y=None, sample_weight=None):
        """Fit the hierarchy on ``X``.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
        y : None
            Ignored; present for scikit-learn's API.
        sample_weight : array-like of shape (n_samples,) or None
            Non-negative weights of the rows, for level 0: its seeding, centroid means
            and inertia, and its resampling k-means (the rows a step takes keep their
            weights). ``tree_.weights(level)`` gives each cluster's weight;
            :meth:`sample` still counts points. Not on the dask backend.

        Returns
        -------
        self : HierarchicalKMeans
        """
        with self._fitting():
            return self._fit(X, sample_weight)

    def _fit(self, X, sample_weight):
        X = self._validate_fit_data(X)
        fit = self.get_params()  # parameters map one to one
        params = check_hierarchy(X, **{name: fit[name] for name in FIT_PARAMS})
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        data = resolve(X, self.device, self.client, self.backend)
        self.levels_ = fit_levels(data, params, self.random_state, self.verbose, sample_weight=sample_weight)
        self.tree_ = tree_from_levels(self.levels_, sample_weight)
        self.cluster_centers_ = self.levels_[-1].centroids
        labels = self.tree_.point_labels(self.tree_.n_levels - 1)
        # one level: the tree's own array, which a user's edit of labels_ must not change
        self.labels_ = labels.copy() if labels is self.tree_.labels[0] and isinstance(labels, np.ndarray) else labels
        self.inertia_ = self._inertia(self._on_metric(X), self.labels_, sample_weight)
        self.n_iter_ = sum(lv.n_iter for lv in self.levels_)
        self._n_features_out = self.cluster_centers_.shape[0]
        return self

    def predict(self, X, level=None):
        """Cluster of each sample at ``level``, found through the tree: the nearest
        level-0 centroid (for a split level 0, the nearest of its nearest parent's),
        then its ancestors.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
        level : int or None, default=None
            0 is the finest level; None is the top.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            For a dask array, a lazy dask array.
        """
        with self._scheduler():
            return self._predict(self._validate_test_data(X), level)

    def _predict(self, X, level=None):
        top = len(self.levels_) - 1
        level = top if level is None else self.tree_._check_level(level)
        labels = self.levels_[0].assign(self._data(X))[0]
        for t in range(1, level + 1):
            labels = arrays_of(labels).lookup(self.levels_[t].labels, labels)
        return labels

    def sample(self, target_size, strategy="random", multiplier=1, method="hierarchical", random_state=None):
        """Indices (int64, sorted) of a balanced subset of the training data.

        Parameters
        ----------
        target_size : int
            Points wanted; at most ``n_samples * multiplier`` are returned.
        strategy : {"random", "closest", "furthest"}, default="random"
            How a level-0 cluster picks points beyond its whole copies.
        multiplier : int, default=1
            Most times one point may be picked.
        method : {"hierarchical", "flat"}, default="hierarchical"
            Balance over the whole tree, or over the level-0 clusters only.
        random_state : int, Generator, RandomState or None
            None takes a stream derived from the estimator's ``random_state``: for an
            int seed, ``SeedSequence(seed).spawn(1)[0]``, so the same seed gives the
            same subset at every call and in every run; a Generator or RandomState is
            used (and advanced) as is; None stays unseeded.

        Returns
        -------
        indices : ndarray of int64, sorted
            Rows of the training data; a row appears at most ``multiplier`` times.
        """
        check_is_fitted(self)
        check_choice("method", method, ("hierarchical", "flat"))
        with self._scheduler():
            return self._sample(target_size, strategy, multiplier, method, random_state)

    def _sample(self, target_size, strategy, multiplier, method, random_state):
        if random_state is None:
            random_state = self.random_state
            if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
                random_state = np.random.default_rng(np.random.SeedSequence(int(random_state)).spawn(1)[0])
        if method == "hierarchical":
            return hierarchical_sampling(self.tree_, target_size, strategy, multiplier, random_state)
        return flat_sampling(self.tree_, target_size, 0, strategy, multiplier, random_state)

    def assignments(self, ids=None) -> np.ndarray:
        """Each training sample's cluster at every level and its distance to its
        level-0 centroid.

        Parameters
        ----------
        ids : 1-D array of n_samples integers or strings, optional
            Adds an ``id`` column.

        Returns
        -------
        numpy.ndarray
            A structured array, one row per sample: ``id`` (if given), ``row``,
            ``cluster_level0`` ... ``cluster_level{T}``, ``distance``. A structured
            array needs neither pandas nor pyarrow, keeps each column one typed
            array, and ``pandas.DataFrame(result)`` or ``pyarrow.Table.from_pandas``
            take it as it is (see :mod:`hkmeans.tables`).
        """
        check_is_fitted(self)
        if ids is not None and len(ids) != self.tree_.n_samples:
            raise ValueError(f"ids must hold one id per training sample ({self.tree_.n_samples}), got {len(ids)}.")
        return assignments(self.tree_, ids)

    def cluster_table(self, selected=None) -> np.ndarray:
        """Every cluster of every level: ``level``, ``cluster``, ``parent`` (-1 at the
        top), ``size`` (samples), ``selected`` (samples of ``selected``, a result of
        :meth:`sample`, in it; 0 without one) and ``mean_distance`` (of its samples to
        their level-0 centroid), as a NumPy structured array (see :meth:`assignments`)."""
        check_is_fitted(self)
        return cluster_table(self.tree_, selected)
