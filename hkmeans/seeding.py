"""Initial centres: k-means++ (greedy, as scikit-learn's), k-means|| and random rows.

Host logic over a backend (:mod:`hkmeans.backends`): the draws come from the caller's
generator, the passes over the rows from the backend.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_array

from . import _config
from ._rng import as_generator
from ._threads import single_threaded_blas
from ._validation import check_init_array, check_kmeans_params, check_sample_weight, shown
from .backends import resolve
from .backends.cpu import CPUBackend, content_draw


def seeding_weights(data):
    """The weights seeding draws by: the backend's sample weights, or None for none or
    weights all equal (which then seed as no weights do)."""
    w = data.weights
    return None if w is None or np.all(w == w[0]) else w


def local_trials(n_clusters) -> int:
    """Candidates per step of greedy k-means++ by default (scikit-learn's rule)."""
    return 2 + int(np.log(n_clusters))


def _seed_greedy(data, n_clusters, rng, n_local_trials=None, weights=None):
    """Rows chosen by greedy (weighted) k-means++; the first with probability
    proportional to its weight. Every draw goes through the rows in the order of
    their contents (:meth:`~hkmeans.backends.cpu.HostRows.draw_order`): the same rows
    in another order, or a row of weight ``w`` in place of ``w`` copies of it, seed
    alike."""
    n = data.shape[0]
    if n_local_trials is None:
        n_local_trials = local_trials(n_clusters)
    if weights is None:
        weights = np.ones(n)
    order = data.draw_order()
    first = int(content_draw(order, weights, rng.random(), weights)[0])
    rand = rng.random((n_clusters - 1, n_local_trials))
    return data.kmeans_plusplus(order, first, rand, weights)


def _seed_parallel(data, n_clusters, rng, n_rounds=_config.KMEANS_PARALLEL_ROUNDS, oversampling=2.0):
    """Rows chosen by k-means|| (Bahmani et al., 2012).

    ``n_rounds`` times, every row joins the candidates with probability
    ``oversampling * n_clusters * d(x)^2 / potential``; the candidates, weighted by the
    rows nearest to them, are then reduced to ``n_clusters`` by greedy k-means++. Each
    round's search for the new candidates also keeps each row's nearest candidate so
    far, so that the weights need no search over all of them.
    """
    n = data.shape[0]
    w = seeding_weights(data)
    chosen = [np.array([rng.integers(n) if w is None else rng.choice(n, p=w / w.sum())])]
    nearest, closest = data.assign(data.take(chosen[0]))
    n_chosen = 1
    for _ in range(n_rounds):
        potentials = closest if w is None else w * closest
        pot = data.total(potentials)
        if pot == 0:
            break
        picked = data.oversample(potentials, oversampling * n_clusters, pot, rng)
        if picked.size:
            chosen.append(picked)
            labels, sqdist = data.assign(data.take(picked))
            closer = sqdist < closest  # ties keep the earlier candidate
            nearest = np.where(closer, labels + n_chosen, nearest)
            closest = np.minimum(closest, sqdist)
            n_chosen += picked.size
    cand = np.concatenate(chosen)  # distinct: a row already chosen is at distance 0, never drawn
    if cand.size < n_clusters:  # too few: top up with random other rows (weighted anew)
        cand = np.sort(np.concatenate([cand, data.other_rows(cand, n_clusters - cand.size, rng)]))
        nearest = data.assign(data.take(cand))[0]
    weights = data.cluster_weights(nearest, cand.size)
    C = CPUBackend(np.ascontiguousarray(data.take(cand)))
    return cand[_seed_greedy(C, n_clusters, rng, weights=weights)]


def init_centers(data, n_clusters, init, rng, n_local_trials=None):
    """Initial centres and their rows: "k-means++" (greedy, as scikit-learn's),
    "k-means||" (scalable k-means++), "random" (distinct rows), a callable
    ``init(X, n_clusters, random_state)`` (given a RandomState drawn from ``rng``;
    no rows) or an array. ``data`` is a backend or an array; its sample weights, if
    any, weight the draws. On a backend that does not seed greedily (one pass per
    centre is too many on a cluster), "k-means++" is k-means||."""
    data = resolve(data)
    if isinstance(init, str):
        if init == "random":
            w = seeding_weights(data)
            p = None if w is None else w / w.sum()
            if p is not None and np.count_nonzero(p) < n_clusters:  # every such row, then repeats
                rows = np.flatnonzero(p)
                repeats = rng.choice(rows, n_clusters - rows.size, p=p[rows] / p[rows].sum())
                idx = np.sort(np.concatenate([rows, repeats]))
            else:
                idx = np.sort(rng.choice(data.shape[0], n_clusters, replace=False, p=p))
        elif init == "k-means||" or not data.greedy_seeding:
            idx = _seed_parallel(data, n_clusters, rng)
        else:
            idx = _seed_greedy(data, n_clusters, rng, n_local_trials, seeding_weights(data))
        return np.array(data.take(idx), order="C"), idx
    if callable(init):
        random_state = np.random.RandomState(int(rng.integers(2**31)))
        init = init(data.X, n_clusters, random_state=random_state)
        return check_init_array(init, n_clusters, data.shape[1], data.dtype), None
    return np.array(init, dtype=data.dtype, order="C"), None


def kmeans_plusplus(X, n_clusters, *, x_squared_norms=None, sample_weight=None, random_state=None, n_local_trials=None):
    """Greedy k-means++ seeding, as :func:`sklearn.cluster.kmeans_plusplus`.

    Parameters
    ----------
    X : array-like or sparse CSR matrix of shape (n_samples, n_features)
    n_clusters : int
    x_squared_norms : array-like of shape (n_samples,) or None
        Accepted for scikit-learn's signature and checked for its length; the kernels
        compute the norms they need themselves.
    sample_weight : array-like of shape (n_samples,) or None
        Rows are drawn with probability proportional to weight times squared distance;
        a row of weight 0 is never drawn.
    random_state : int, Generator, RandomState or None
    n_local_trials : int or None
        Candidates tried per centre; None means ``2 + int(log(n_clusters))``.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
    indices : ndarray of shape (n_clusters,)
        Row of ``X`` each centre was taken from.
    """
    X = check_array(X, accept_sparse="csr", dtype=[np.float64, np.float32], order="C")
    check_kmeans_params(X, n_clusters, "k-means++", 1, 1, 0.0, "euclidean")
    if x_squared_norms is not None and len(x_squared_norms) != X.shape[0]:
        raise ValueError(
            f"The length of x_squared_norms {len(x_squared_norms)} should be equal to the length of "
            f"n_samples {X.shape[0]}."
        )
    weights = check_sample_weight(sample_weight, X.shape[0])
    if n_local_trials is not None and (not isinstance(n_local_trials, (int, np.integer)) or n_local_trials < 1):
        raise ValueError(f"n_local_trials must be a positive integer, got {shown(n_local_trials)}.")
    with single_threaded_blas():
        return init_centers(
            resolve(X).weighted(weights), n_clusters, "k-means++", as_generator(random_state), n_local_trials
        )
