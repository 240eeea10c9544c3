"""Initial centres: k-means++ (greedy, as scikit-learn's), k-means|| and random rows.

Host logic over a backend (:mod:`hkmeans.backends`): the draws come from the caller's
generator, the passes over the rows from the backend.
"""

from __future__ import annotations

import numpy as np

from ._rng import as_generator
from ._threads import single_threaded_blas
from .backends import resolve
from .backends.cpu import CPUBackend


def _seed_greedy(data, n_clusters, rng, n_local_trials=None, weights=None):
    """Rows chosen by greedy (weighted) k-means++."""
    n = data.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    if weights is None:
        weights = np.ones(n)
        first = int(rng.integers(n))
    else:
        first = int(rng.choice(n, p=weights / weights.sum()))
    rand = rng.random((n_clusters - 1, n_local_trials))
    return data.kmeans_plusplus(first, rand, weights)


def _seed_parallel(data, n_clusters, rng, n_rounds=5, oversampling=2.0):
    """Rows chosen by k-means|| (Bahmani et al., 2012).

    ``n_rounds`` times, every row joins the candidates with probability
    ``oversampling * n_clusters * d(x)^2 / potential``; the candidates, weighted by the
    rows nearest to them, are then reduced to ``n_clusters`` by greedy k-means++.
    """
    n = data.shape[0]
    chosen = [np.array([rng.integers(n)])]
    closest = data.assign(data.take(chosen[0]))[1]
    for _ in range(n_rounds):
        pot = data.total(closest)
        if pot == 0:
            break
        picked = data.oversample(closest, oversampling * n_clusters, pot, rng)
        if picked.size:
            chosen.append(picked)
            closest = np.minimum(closest, data.assign(data.take(picked))[1])
    cand = np.unique(np.concatenate(chosen))
    if cand.size < n_clusters:  # too few: top up with random other rows
        cand = np.sort(np.concatenate([cand, data.other_rows(cand, n_clusters - cand.size, rng)]))
    C = CPUBackend(np.ascontiguousarray(data.take(cand)))
    weights = data.counts(data.assign(C.X)[0], cand.size).astype(np.float64)
    return cand[_seed_greedy(C, n_clusters, rng, weights=weights)]


def init_centers(data, n_clusters, init, rng, n_local_trials=None):
    """Initial centres and their rows: "k-means++" (greedy, as scikit-learn's),
    "k-means||" (scalable k-means++), "random" (distinct rows) or an array.
    ``data`` is a backend or an array. On a backend that does not seed greedily (one
    pass per centre is too many on a cluster), "k-means++" is k-means||."""
    data = resolve(data)
    if isinstance(init, str):
        if init == "random":
            idx = np.sort(rng.choice(data.shape[0], n_clusters, replace=False))
        elif init == "k-means||" or not data.greedy_seeding:
            idx = _seed_parallel(data, n_clusters, rng)
        else:
            idx = _seed_greedy(data, n_clusters, rng, n_local_trials)
        return np.array(data.take(idx), order="C"), idx
    return np.array(init, dtype=data.dtype, order="C"), None


def kmeans_plusplus(X, n_clusters, *, random_state=None, n_local_trials=None):
    """Greedy k-means++ seeding, like :func:`sklearn.cluster.kmeans_plusplus`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_clusters : int
    random_state : int, Generator, RandomState or None
    n_local_trials : int or None
        Candidates tried per centre; None means ``2 + int(log(n_clusters))``.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
    indices : ndarray of shape (n_clusters,)
        Row of ``X`` each centre was taken from.
    """
    from sklearn.utils import check_array

    from .kmeans import check_kmeans_params

    X = check_array(X, dtype=[np.float64, np.float32], order="C")
    check_kmeans_params(X, n_clusters, "k-means++", 1, 1, 0.0, "euclidean")
    if n_local_trials is not None and (
        not isinstance(n_local_trials, (int, np.integer)) or n_local_trials < 1
    ):
        raise ValueError(f"n_local_trials must be a positive integer, got {n_local_trials!r}.")
    with single_threaded_blas():
        return init_centers(X, n_clusters, "k-means++", as_generator(random_state), n_local_trials)
